//! The engine: pure Rust, no server. The rule catalog, the policy that turns findings
//! into decisions and messages, type-change analysis and the docs renderer.
//! The pgrx layer (pg_migsafe's `hook`, `stmt`, `sql`) feeds it facts. A crate of its
//! own: it cannot use pgrx, and `cargo test -p migsafe_engine` runs its tests without a
//! server.

pub mod audit;
pub mod detect;
pub mod docs;
pub mod lockretry;
pub mod phase;
pub mod policy;
pub mod redact;
pub mod rules;
pub mod schema;
pub mod typechange;
