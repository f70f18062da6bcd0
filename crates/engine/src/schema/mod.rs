//! Schema snapshots, the pure part: a serde model of everything a migration can
//! change ([`model`]), the diff between two models ([`diff`]), the DDL that takes a
//! live schema back to a snapshot ([`rollback`]), and the quoting that DDL needs
//! ([`quote`]).
//!
//! Nothing here touches the server. The pgrx layer fills a [`model::Schema`] from one
//! JSON document produced by catalog queries (its shape is documented in [`model`]),
//! stores snapshots as that JSON, and runs what [`rollback::rollback_sql`] returns.

pub mod diff;
pub mod model;
pub mod quote;
pub mod rollback;
pub mod scope;
