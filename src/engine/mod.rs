//! The engine: pure Rust, no server. The rule catalog, the policy that turns findings
//! into decisions and messages, type-change analysis and the docs renderer.
//! The pgrx layer (`crate::hook`, `crate::stmt`, `crate::sql`) feeds it facts.

pub mod audit;
pub mod detect;
pub mod docs;
pub mod phase;
pub mod policy;
pub mod redact;
pub mod rules;
pub mod schema;
pub mod typechange;
