// Step 6: rename users.name to full_name (answered "rename" at drizzle-kit's prompt).
import { bigint, index, integer, numeric, pgEnum, pgTable, serial, text, timestamp, varchar } from "drizzle-orm/pg-core";

export const orderStatus = pgEnum("order_status", ["pending", "paid", "shipped"]);

export const users = pgTable("users", {
  id: serial("id").primaryKey(),
  email: varchar("email", { length: 320 }).notNull(),
  fullName: text("full_name"),
  age: bigint("age", { mode: "number" }),
  createdAt: timestamp("created_at", { withTimezone: true }).defaultNow(),
});

export const orders = pgTable(
  "orders",
  {
    id: serial("id").primaryKey(),
    userId: integer("user_id").references(() => users.id),
    status: orderStatus("status").default("pending").notNull(),
    total: numeric("total", { precision: 10, scale: 2 }),
    note: text("note"),
  },
  (t) => [index("orders_user_id_idx").on(t.userId)],
);
