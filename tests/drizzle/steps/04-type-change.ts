// Step 4: type changes — age integer -> bigint (rewrite), email varchar(200) -> varchar(320) (free).
import { bigint, index, integer, numeric, pgEnum, pgTable, serial, text, timestamp, varchar } from "drizzle-orm/pg-core";

export const orderStatus = pgEnum("order_status", ["pending", "paid", "shipped"]);

export const users = pgTable("users", {
  id: serial("id").primaryKey(),
  email: varchar("email", { length: 320 }).notNull(),
  name: text("name"),
  legacyEmail: text("legacy_email"),
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

export const sessions = pgTable("sessions", {
  id: serial("id").primaryKey(),
  token: text("token").notNull(),
});
