import { defineConfig } from "drizzle-kit";

// The integration test points DATABASE_URL at its scratch cluster (trust auth, no
// password, no TLS: sslmode=disable — without it drizzle-kit asks for TLS and exits 1
// silently against a server without TLS) and DRIZZLE_MIGRATIONS at a copy of the
// migrations holding only the first N files.
export default defineConfig({
  dialect: "postgresql",
  schema: "./schema.ts",
  out: process.env.DRIZZLE_MIGRATIONS ?? "./migrations",
  dbCredentials: {
    url: process.env.DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable",
  },
});
