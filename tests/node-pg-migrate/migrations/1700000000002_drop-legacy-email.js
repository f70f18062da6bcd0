// Contract: the column no deployed code reads any more.
exports.up = (pgm) => {
  pgm.dropColumn("users", "legacy_email");
};
