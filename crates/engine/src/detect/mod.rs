//! Facts in, findings out: one file per statement family. The statement layer
//! (`crate::stmt`) reads a statement's parse tree and the catalog into the plain fact
//! structs declared here; these functions decide which rules the facts break. The
//! rules' own tests sit next to them, and run without a server.
//!
//! A fact that costs work to learn (a lock, a look at the table's files) is passed
//! as a closure, asked only when the decision needs it.

pub mod columns;
pub mod constraints;
pub mod domains;
pub mod drops;
pub mod indexes;
pub mod migration;
pub mod renames;
pub mod sequences;
pub mod tables;
pub mod target;
