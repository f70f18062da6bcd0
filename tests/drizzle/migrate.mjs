// Runs Drizzle's programmatic migrator against DATABASE_URL and prints the outcome as
// one JSON line. On failure drizzle-orm throws a DrizzleQueryError whose message is
// only "Failed query: …"; the PostgreSQL error (our SQLSTATE and message) is in
// err.cause — this prints it, as a pipeline should log it.
import pg from "pg";
import { drizzle } from "drizzle-orm/node-postgres";
import { migrate } from "drizzle-orm/node-postgres/migrator";

const folder = process.argv[2] ?? "./migrations";
const client = new pg.Client({ connectionString: process.env.DATABASE_URL });
await client.connect();
try {
  await migrate(drizzle(client), { migrationsFolder: folder });
  console.log(JSON.stringify({ ok: true }));
} catch (err) {
  const c = err.cause ?? {};
  console.log(JSON.stringify({
    ok: false,
    message: err.message,
    cause: { code: c.code, message: c.message, detail: c.detail, hint: c.hint },
  }));
  process.exitCode = 1;
} finally {
  await client.end();
}
