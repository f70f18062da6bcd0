// Runs Drizzle's programmatic migrator against DATABASE_URL and prints the outcome as
// one JSON line on stdout:
//   success: {"ok":true}                                           (exit code 0)
//   failure: {"ok":false,"message":…,"cause":{code,message,detail,hint}}  (exit code 1)
// On failure drizzle-orm throws a DrizzleQueryError whose message is only
// "Failed query: <sql>"; the PostgreSQL error (our SQLSTATE MS001 and message) is in
// err.cause — this prints it, as a pipeline should log it.
//
// usage: DATABASE_URL=postgres://user@host:port/db node migrate.mjs [migrationsFolder]
import pg from "pg";
import { drizzle } from "drizzle-orm/node-postgres";
import { migrate } from "drizzle-orm/node-postgres/migrator";

const migrationsFolder = process.argv[2] ?? "./migrations";
const client = new pg.Client({ connectionString: process.env.DATABASE_URL });
try {
  await client.connect();
  await migrate(drizzle(client), { migrationsFolder });
  console.log(JSON.stringify({ ok: true }));
} catch (err) {
  // A query error carries the server's error in err.cause; an error raised before any
  // query (connection refused, missing journal) has no cause.
  const c = err.cause ?? {};
  console.log(JSON.stringify({
    ok: false,
    message: err.message,
    cause: { code: c.code, message: c.message, detail: c.detail, hint: c.hint },
  }));
  process.exitCode = 1;
} finally {
  await client.end().catch(() => {});
}
