//! The statement layer: the code that reads PostgreSQL's raw parse trees of utility
//! statements and resolves the names in them as the server does.
//!
//! - `parse` — SQL text into parse trees, split as the server splits it;
//! - `classify` — the classifier: a statement's findings for the hook and check();
//! - `reach` — what a statement reaches in the schema model (the automatic snapshot);
//! - `partition` — a partition's table and where its range ends (standing approvals);
//! - `txn` — statements that cannot run inside a transaction block;
//! - `kind` — the hook's fast path and what its bookkeeping reads;
//! - `secrets` — which statements carry credentials (for the audit log's redaction);
//! - `locks` — the table a statement locks heavily, the database it needs free;
//! - `targets` — what an approved statement would destroy (for the recycle bin);
//! - `nodes` — the node helpers they share (the PostgreSQL 13/14 differences once).
//!
//! No other module reads a statement's parse tree: they get what they need from here.

pub mod classify;
pub mod kind;
pub mod locks;
pub mod nodes;
pub mod parse;
pub mod partition;
pub mod reach;
pub mod secrets;
pub mod targets;
pub mod txn;
