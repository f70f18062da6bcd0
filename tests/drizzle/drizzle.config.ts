import { defineConfig } from "drizzle-kit";

// `drizzle-kit generate` needs no database. For `drizzle-kit migrate` the integration
// test (tests/integration/test_drizzle.py) sets PGHOST/PGPORT/PGUSER/PGDATABASE to its
// scratch cluster (trust auth: no password) and DRIZZLE_MIGRATIONS to a copy of the
// migrations holding only the first N files.
//
// - ssl: false is required: with host/port credentials and no `ssl` key drizzle-kit
//   0.31 asks the server for TLS and, against a server without TLS, exits 1 printing
//   nothing.
// - password is passed only when set: drizzle-kit rejects an empty string
//   ("Please provide required params for Postgres driver: [x] password: ''").
const password = process.env.PGPASSWORD;

export default defineConfig({
  dialect: "postgresql",
  schema: "./schema.ts",
  out: process.env.DRIZZLE_MIGRATIONS || "./migrations",
  dbCredentials: {
    host: process.env.PGHOST || "127.0.0.1",
    port: Number(process.env.PGPORT || 5432),
    user: process.env.PGUSER || "postgres",
    database: process.env.PGDATABASE || "postgres",
    ...(password ? { password } : {}),
    ssl: false,
  },
});
