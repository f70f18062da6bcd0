// Step 1: the initial schema.
import { integer, numeric, pgEnum, pgTable, serial, text, varchar } from "drizzle-orm/pg-core";

export const orderStatus = pgEnum("order_status", ["pending", "paid"]);

export const users = pgTable("users", {
  id: serial("id").primaryKey(),
  email: varchar("email", { length: 200 }).notNull(),
  name: text("name"),
  legacyEmail: text("legacy_email"),
  age: integer("age"),
});

export const orders = pgTable("orders", {
  id: serial("id").primaryKey(),
  userId: integer("user_id"),
  status: orderStatus("status").default("pending").notNull(),
  total: numeric("total", { precision: 10, scale: 2 }),
});

export const sessions = pgTable("sessions", {
  id: serial("id").primaryKey(),
  token: text("token").notNull(),
});
