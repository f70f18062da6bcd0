//! The statement layer: the code that reads PostgreSQL's raw parse trees of utility
//! statements and resolves the names in them as the server does.
//!
//! - `classify` — the classifier: a statement's findings for the hook and check();
//! - `reach` — what a statement reaches in the schema model (the automatic snapshot);
//! - `txn` — statements that cannot run inside a transaction block.
//!
//! Still outside it, and moving here next: the hook's fast path (`hook.rs`), the
//! recycle bin's DROP / TRUNCATE targets (`recycle.rs`), the audit's lock targets
//! (`audit/backend.rs`) and credential redaction (`redact.rs`).

pub mod classify;
pub mod reach;
pub mod txn;
