// Expand: a nullable column, free on any table.
exports.up = (pgm) => {
  pgm.addColumn("users", { nickname: { type: "text" } });
};
