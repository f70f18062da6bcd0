//! The schema model: everything a migration can change, as plain serde data.
//!
//! # Design
//!
//! A [`Schema`] is a set of maps from a stable **identity key** to an object. Keys
//! quote every name (`"public"."my table"`, see [`super::quote`]) and the maps are
//! `BTreeMap`s, so serializing the same schema always gives the same bytes, and two
//! snapshots can be compared key by key. Objects that belong to a table (constraints,
//! indexes, triggers, policies) are top-level maps too, each object naming its table;
//! only columns live inside their [`Table`], because their order matters.
//!
//! Comments and privileges are fields of the object they belong to (`comment`,
//! `acl`), which keeps "per object" literal and lets the diff report them as separate
//! changes.
//!
//! # The JSON document the pgrx layer produces
//!
//! The model deserializes directly from one JSON document built by catalog queries.
//! Every map may be given either as a JSON **array** of objects (what `json_agg`
//! produces — the simplest to write) or as an **object** keyed by anything: keys are
//! always **recomputed** from the objects' own name fields ([`Keyed`]), so the SQL
//! side never has to build identity strings, and a duplicate is an error. Missing
//! maps are empty; optional fields may be omitted or `null`. Enumerated fields accept
//! both the words below and the catalog's one-letter codes (`relpersistence`,
//! `attidentity`, `contype`, `prokind`, `tgenabled`), so `json_build_object` can pass
//! catalog columns through unchanged.
//!
//! ```json
//! {
//!   "schemas":   [{"name": "public", "comment": null, "acl": ["pg_database_owner=UC/pg_database_owner", "=U/pg_database_owner"]}],
//!   "tables":    [{"schema": "public", "name": "users",
//!                  "persistence": "p",                 // p|u  (permanent|unlogged)
//!                  "partition_key": null,              // pg_get_partkeydef(oid), e.g. "RANGE (created_at)"
//!                  "partition_bound": null,            // pg_get_expr(relpartbound, oid), e.g. "FOR VALUES IN (1)"
//!                  "inherits": [],                     // parent identity keys, in inhseqno order
//!                  "rls_enabled": false, "rls_forced": false,
//!                  "has_data": true,                   // optional: relpages > 0 or similar; null = unknown
//!                  "comment": null, "acl": ["alice=arwdDxt/alice"],
//!                  "columns": [{"name": "id", "position": 1,
//!                               "type": "bigint",       // format_type(atttypid, atttypmod)
//!                               "base_type": "int8",    // optional: typname of the base type (domains resolved)
//!                               "type_category": "N",   // optional: its typcategory
//!                               "typmod": -1,           // atttypmod
//!                               "collation": null,      // only when not the type's default: quoted, e.g. "\"C\""
//!                               "not_null": true,
//!                               "default": null,        // pg_get_expr(adbin, adrelid) unless generated
//!                               "identity": "a",        // null|a|d  (always|by_default)
//!                               "generated": null,      // pg_get_expr(adbin, adrelid) when attgenerated = 's'
//!                               "local": true,          // attislocal
//!                               "comment": null, "acl": []}]}],
//!   "constraints": [{"table": "\"public\".\"users\"", "name": "users_pkey",
//!                  "kind": "p",                        // p|u|c|f|x
//!                  "definition": "PRIMARY KEY (id)",   // pg_get_constraintdef(oid)
//!                  "validated": true, "deferrable": false, "deferred": false,
//!                  "references": null,                 // FK: identity key of the referenced table
//!                  "local": true, "comment": null}],
//!   "indexes":   [{"schema": "public", "name": "users_email_idx", "table": "\"public\".\"users\"",
//!                  "definition": "CREATE INDEX users_email_idx ON public.users USING btree (email)",
//!                  "valid": true, "unique": false,
//!                  "constraint": false,                // owned by a PK/UNIQUE/EXCLUDE constraint
//!                  "inherited": false,                 // an attached partition of a partitioned index
//!                  "comment": null}],
//!   "sequences": [{"schema": "public", "name": "users_id_seq", "data_type": "bigint",
//!                  "start": 1, "increment": 1, "min": 1, "max": 9223372036854775807,
//!                  "cache": 1, "cycle": false,
//!                  "owned_by": "\"public\".\"users\".\"id\"",  // column identity key or null
//!                  "last_value": 42,                   // pg_sequences.last_value (null: never called)
//!                  "comment": null, "acl": []}],
//!   "views":     [{"schema": "public", "name": "active_users", "materialized": false,
//!                  "definition": " SELECT ...;",       // pg_get_viewdef(oid)
//!                  "depends_on": ["\"public\".\"users\""],  // relations and functions its rule uses
//!                  "has_data": null,                   // matviews: relispopulated
//!                  "comment": null, "acl": []}],
//!   "enums":     [{"schema": "public", "name": "mood", "labels": ["sad", "ok"], "comment": null, "acl": []}],
//!   "domains":   [{"schema": "public", "name": "posint", "base_type": "integer", "collation": null,
//!                  "not_null": false, "default": null,
//!                  "checks": [{"name": "posint_check", "definition": "CHECK (VALUE > 0)", "validated": true}],
//!                  "comment": null, "acl": []}],
//!   "functions": [{"schema": "public", "name": "add_tax", "kind": "f",   // f|p|w
//!                  "arguments": "numeric",             // pg_get_function_identity_arguments(oid)
//!                  "result": "numeric",                // pg_get_function_result(oid)
//!                  "definition": "CREATE OR REPLACE FUNCTION ...",  // pg_get_functiondef(oid)
//!                  "body_hash": "…",                   // e.g. md5(prosrc)
//!                  "comment": null, "acl": ["=X/alice", "alice=X/alice"]}],
//!   "triggers":  [{"table": "\"public\".\"users\"", "name": "audit",
//!                  "definition": "CREATE TRIGGER audit ...",   // pg_get_triggerdef(oid)
//!                  "enabled": "O",                     // O|D|R|A (tgenabled)
//!                  "inherited": false,                 // tgparentid <> 0 (cloned to a partition)
//!                  "comment": null}],
//!   "policies":  [{"table": "\"public\".\"users\"", "name": "own_rows", "permissive": true,
//!                  "command": "ALL",                   // pg_policies.cmd
//!                  "roles": ["public"],                // pg_policies.roles ("public" = PUBLIC)
//!                  "using": "(owner = CURRENT_USER)", "with_check": null,
//!                  "comment": null}]
//! }
//! ```
//!
//! What the queries should leave out: system schemas, `migsafe`, `migsafe_recycle`,
//! temporary objects, objects that belong to an extension, identity columns' internal
//! sequences, aggregates (pg_get_functiondef cannot print them) and constraint-owned
//! indexes may be included (they are flagged and rollback leaves them to their
//! constraint). ACLs should be given explicitly: `coalesce(relacl, acldefault('r',
//! relowner))::text[]` and likewise for the other catalogs, so that "never granted"
//! and "the default" compare equal.

use super::quote::{identity, parse_identity_with_tail};
use super::rollback::parse_acl_item;
use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::marker::PhantomData;

/// An object that knows its own key in the map that holds it.
pub trait Keyed {
    /// The identity key (see the module documentation).
    fn key(&self) -> String;
}

/// Deserializes a keyed map from either a JSON array or a JSON object, recomputing
/// every key from [`Keyed::key`] and refusing duplicates.
pub fn deserialize_keyed<'de, D, T>(d: D) -> Result<BTreeMap<String, T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Keyed,
{
    struct V<T>(PhantomData<T>);
    fn put<T: Keyed, E: de::Error>(m: &mut BTreeMap<String, T>, v: T) -> Result<(), E> {
        let k = v.key();
        if m.insert(k.clone(), v).is_some() {
            return Err(E::custom(format!("duplicate object {k}")));
        }
        Ok(())
    }
    impl<'de, T: Deserialize<'de> + Keyed> Visitor<'de> for V<T> {
        type Value = BTreeMap<String, T>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an array of objects or an object of objects")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut m = BTreeMap::new();
            while let Some(v) = seq.next_element::<T>()? {
                put(&mut m, v)?;
            }
            Ok(m)
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut m = BTreeMap::new();
            while let Some((_, v)) = map.next_entry::<String, T>()? {
                put(&mut m, v)?;
            }
            Ok(m)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(BTreeMap::new())
        }
    }
    d.deserialize_any(V(PhantomData))
}

/// Accepts `null` for a list (json_agg over no rows gives null).
fn deserialize_list<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
}

fn yes() -> bool {
    true
}
fn minus_one() -> i32 {
    -1
}

/// A whole database's schema, as far as migrations are concerned.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schema {
    #[serde(default, deserialize_with = "deserialize_keyed")]
    pub schemas: BTreeMap<String, Namespace>,
    #[serde(default, deserialize_with = "deserialize_keyed")]
    pub tables: BTreeMap<String, Table>,
    #[serde(default, deserialize_with = "deserialize_keyed")]
    pub constraints: BTreeMap<String, Constraint>,
    #[serde(default, deserialize_with = "deserialize_keyed")]
    pub indexes: BTreeMap<String, Index>,
    #[serde(default, deserialize_with = "deserialize_keyed")]
    pub sequences: BTreeMap<String, Sequence>,
    #[serde(default, deserialize_with = "deserialize_keyed")]
    pub views: BTreeMap<String, View>,
    #[serde(default, deserialize_with = "deserialize_keyed")]
    pub enums: BTreeMap<String, EnumType>,
    #[serde(default, deserialize_with = "deserialize_keyed")]
    pub domains: BTreeMap<String, Domain>,
    #[serde(default, deserialize_with = "deserialize_keyed")]
    pub functions: BTreeMap<String, Function>,
    #[serde(default, deserialize_with = "deserialize_keyed")]
    pub triggers: BTreeMap<String, Trigger>,
    #[serde(default, deserialize_with = "deserialize_keyed")]
    pub policies: BTreeMap<String, Policy>,
}

impl Schema {
    /// Parses the JSON document described in the module documentation.
    pub fn from_json(json: &str) -> Result<Schema, serde_json::Error> {
        serde_json::from_str(json)
    }

    /// Forgets the position (`last_value`) of every sequence that a role holding the
    /// privileges of `roles` could not read (see [`may_read_sequence`]): documents are
    /// read as the superuser, and nothing shown through pg_migsafe may tell a caller
    /// more than the caller could read.
    pub fn hide_sequence_values(&mut self, roles: &BTreeSet<String>) {
        for s in self.sequences.values_mut() {
            if s.last_value.is_some() && !may_read_sequence(&s.acl, roles) {
                s.last_value = None;
            }
        }
    }

    /// The canonical (deterministic, keyed-object) JSON form.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("the model always serializes")
    }

    /// Adds an object under its own key (replacing one with the same key).
    pub fn insert<T: Insert>(&mut self, object: T) {
        object.insert_into(self);
    }

    /// A relation (table, view or materialized view) with this identity key exists.
    pub fn has_relation(&self, key: &str) -> bool {
        self.tables.contains_key(key) || self.views.contains_key(key)
    }

    /// Total number of objects (columns count individually).
    pub fn object_count(&self) -> usize {
        self.schemas.len()
            + self.tables.len()
            + self.tables.values().map(|t| t.columns.len()).sum::<usize>()
            + self.constraints.len()
            + self.indexes.len()
            + self.sequences.len()
            + self.views.len()
            + self.enums.len()
            + self.domains.len()
            + self.functions.len()
            + self.triggers.len()
            + self.policies.len()
    }
}

/// Objects that can be put into a [`Schema`] by [`Schema::insert`].
pub trait Insert: Keyed {
    fn insert_into(self, schema: &mut Schema);
}

macro_rules! insertable {
    ($t:ty, $field:ident) => {
        impl Insert for $t {
            fn insert_into(self, schema: &mut Schema) {
                schema.$field.insert(self.key(), self);
            }
        }
    };
}
insertable!(Namespace, schemas);
insertable!(Table, tables);
insertable!(Constraint, constraints);
insertable!(Index, indexes);
insertable!(Sequence, sequences);
insertable!(View, views);
insertable!(EnumType, enums);
insertable!(Domain, domains);
insertable!(Function, functions);
insertable!(Trigger, triggers);
insertable!(Policy, policies);

/// A schema (namespace). Key: `"name"`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Namespace {
    pub name: String,
    /// The owning role (`pg_get_userbyid`): state, never reported as a change; the
    /// rollback re-creates the object as this role. `None` in snapshots taken before
    /// pg_migsafe 0.2.0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    #[serde(default)]
    pub comment: Option<String>,
    #[serde(default, deserialize_with = "deserialize_list")]
    pub acl: Vec<String>,
}

impl Keyed for Namespace {
    fn key(&self) -> String {
        identity(&[&self.name])
    }
}

/// `relpersistence` (temporary tables are not part of the model).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Persistence {
    #[default]
    #[serde(alias = "p")]
    Permanent,
    #[serde(alias = "u")]
    Unlogged,
}

/// An ordinary or partitioned table. Key: `"schema"."name"`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Table {
    pub schema: String,
    pub name: String,
    /// The owning role (`pg_get_userbyid`): state, never reported as a change; the
    /// rollback re-creates the object as this role. `None` in snapshots taken before
    /// pg_migsafe 0.2.0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    #[serde(default)]
    pub persistence: Persistence,
    /// `pg_get_partkeydef()`: set on a partitioned table.
    #[serde(default)]
    pub partition_key: Option<String>,
    /// `pg_get_expr(relpartbound)`: set on a partition, whose parent is `inherits[0]`.
    #[serde(default)]
    pub partition_bound: Option<String>,
    /// Identity keys of the parents, in `inhseqno` order.
    #[serde(default, deserialize_with = "deserialize_list")]
    pub inherits: Vec<String>,
    #[serde(default)]
    pub rls_enabled: bool,
    #[serde(default)]
    pub rls_forced: bool,
    /// Whether the table holds rows; `None` = unknown (treated as "has data").
    /// State, not schema: never reported as a change.
    #[serde(default)]
    pub has_data: Option<bool>,
    #[serde(default)]
    pub comment: Option<String>,
    #[serde(default, deserialize_with = "deserialize_list")]
    pub acl: Vec<String>,
    /// Keyed by the column name itself (unquoted).
    #[serde(default, deserialize_with = "deserialize_keyed")]
    pub columns: BTreeMap<String, Column>,
}

impl Keyed for Table {
    fn key(&self) -> String {
        identity(&[&self.schema, &self.name])
    }
}

impl Table {
    /// Column names in table order (by `position`, then name).
    pub fn column_order(&self) -> Vec<String> {
        let mut cols: Vec<&Column> = self.columns.values().collect();
        cols.sort_by(|a, b| a.position.cmp(&b.position).then(a.name.cmp(&b.name)));
        cols.into_iter().map(|c| c.name.clone()).collect()
    }

    /// The identity key of one of its columns.
    pub fn column_key(&self, column: &str) -> String {
        identity(&[&self.schema, &self.name, column])
    }

    /// "The table may hold rows": unknown counts as yes.
    pub fn may_have_data(&self) -> bool {
        self.has_data != Some(false)
    }
}

/// `attidentity`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdentityKind {
    #[serde(alias = "a")]
    Always,
    #[serde(alias = "d")]
    ByDefault,
}

impl IdentityKind {
    pub fn sql(self) -> &'static str {
        match self {
            IdentityKind::Always => "ALWAYS",
            IdentityKind::ByDefault => "BY DEFAULT",
        }
    }
}

/// A table column. Key inside [`Table::columns`]: its name, unquoted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Column {
    pub name: String,
    /// `attnum`; only the order matters (dropped columns leave gaps).
    pub position: i32,
    /// `format_type(atttypid, atttypmod)`, e.g. `character varying(20)`.
    #[serde(rename = "type")]
    pub type_name: String,
    /// typname of the base type (domains resolved), for type-change analysis.
    #[serde(default)]
    pub base_type: Option<String>,
    /// typcategory of the base type.
    #[serde(default)]
    pub type_category: Option<char>,
    #[serde(default = "minus_one")]
    pub typmod: i32,
    /// The collation as written after COLLATE, when not the type's default.
    #[serde(default)]
    pub collation: Option<String>,
    #[serde(default)]
    pub not_null: bool,
    #[serde(default)]
    pub default: Option<String>,
    #[serde(default)]
    pub identity: Option<IdentityKind>,
    /// The expression of a stored generated column.
    #[serde(default)]
    pub generated: Option<String>,
    /// `attislocal`: false for a column that only exists through a parent.
    #[serde(default = "yes")]
    pub local: bool,
    #[serde(default)]
    pub comment: Option<String>,
    #[serde(default, deserialize_with = "deserialize_list")]
    pub acl: Vec<String>,
}

impl Keyed for Column {
    fn key(&self) -> String {
        self.name.clone()
    }
}

impl Column {
    /// A plain nullable column of a type, for building schemas in code and tests.
    pub fn new(name: &str, position: i32, type_name: &str) -> Column {
        Column {
            name: name.to_string(),
            position,
            type_name: type_name.to_string(),
            base_type: None,
            type_category: None,
            typmod: -1,
            collation: None,
            not_null: false,
            default: None,
            identity: None,
            generated: None,
            local: true,
            comment: None,
            acl: Vec::new(),
        }
    }
}

/// `contype`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConstraintKind {
    #[serde(alias = "p")]
    PrimaryKey,
    #[serde(alias = "u")]
    Unique,
    #[serde(alias = "c")]
    Check,
    #[serde(alias = "f")]
    ForeignKey,
    #[serde(alias = "x")]
    Exclude,
}

/// A table constraint. Key: `"name" on "schema"."table"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Constraint {
    /// Identity key of the table.
    pub table: String,
    pub name: String,
    pub kind: ConstraintKind,
    /// `pg_get_constraintdef(oid)` (includes NOT VALID and DEFERRABLE clauses).
    pub definition: String,
    #[serde(default = "yes")]
    pub validated: bool,
    #[serde(default)]
    pub deferrable: bool,
    #[serde(default)]
    pub deferred: bool,
    /// Foreign keys: identity key of the referenced table.
    #[serde(default)]
    pub references: Option<String>,
    /// `conislocal`: false when it only exists through a parent.
    #[serde(default = "yes")]
    pub local: bool,
    #[serde(default)]
    pub comment: Option<String>,
}

impl Keyed for Constraint {
    fn key(&self) -> String {
        format!("{} on {}", identity(&[&self.name]), self.table)
    }
}

/// An index. Key: `"schema"."name"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Index {
    pub schema: String,
    pub name: String,
    /// Identity key of the table or materialized view.
    pub table: String,
    /// `pg_get_indexdef(oid)`: a complete CREATE INDEX statement.
    pub definition: String,
    #[serde(default = "yes")]
    pub valid: bool,
    #[serde(default)]
    pub unique: bool,
    /// Owned by a PRIMARY KEY / UNIQUE / EXCLUDE constraint.
    #[serde(default)]
    pub constraint: bool,
    /// A partition's index attached to a partitioned index.
    #[serde(default)]
    pub inherited: bool,
    #[serde(default)]
    pub comment: Option<String>,
}

impl Keyed for Index {
    fn key(&self) -> String {
        identity(&[&self.schema, &self.name])
    }
}

/// A sequence. Key: `"schema"."name"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sequence {
    pub schema: String,
    pub name: String,
    /// The owning role (`pg_get_userbyid`): state, never reported as a change; the
    /// rollback re-creates the object as this role. `None` in snapshots taken before
    /// pg_migsafe 0.2.0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// `format_type(seqtypid, NULL)`: `smallint`, `integer` or `bigint`.
    pub data_type: String,
    pub start: i64,
    pub increment: i64,
    pub min: i64,
    pub max: i64,
    pub cache: i64,
    #[serde(default)]
    pub cycle: bool,
    /// Identity key of the owning column.
    #[serde(default)]
    pub owned_by: Option<String>,
    /// `pg_sequences.last_value`; `None` when never called. State, not schema: never
    /// reported as a change, used when a dropped sequence is re-created.
    #[serde(default)]
    pub last_value: Option<i64>,
    #[serde(default)]
    pub comment: Option<String>,
    #[serde(default, deserialize_with = "deserialize_list")]
    pub acl: Vec<String>,
}

impl Keyed for Sequence {
    fn key(&self) -> String {
        identity(&[&self.schema, &self.name])
    }
}

/// A view or materialized view. Key: `"schema"."name"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct View {
    pub schema: String,
    pub name: String,
    /// The owning role (`pg_get_userbyid`): state, never reported as a change; the
    /// rollback re-creates the object as this role. `None` in snapshots taken before
    /// pg_migsafe 0.2.0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    #[serde(default)]
    pub materialized: bool,
    /// `pg_get_viewdef(oid)`.
    pub definition: String,
    /// Identity keys of the relations (and functions) its rule depends on.
    #[serde(default, deserialize_with = "deserialize_list")]
    pub depends_on: Vec<String>,
    /// Materialized views: populated? `None` = unknown. State, not schema.
    #[serde(default)]
    pub has_data: Option<bool>,
    #[serde(default)]
    pub comment: Option<String>,
    #[serde(default, deserialize_with = "deserialize_list")]
    pub acl: Vec<String>,
}

impl Keyed for View {
    fn key(&self) -> String {
        identity(&[&self.schema, &self.name])
    }
}

/// An enum type. Key: `"schema"."name"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnumType {
    pub schema: String,
    pub name: String,
    /// The owning role (`pg_get_userbyid`): state, never reported as a change; the
    /// rollback re-creates the object as this role. `None` in snapshots taken before
    /// pg_migsafe 0.2.0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// In `enumsortorder` order.
    #[serde(deserialize_with = "deserialize_list")]
    pub labels: Vec<String>,
    #[serde(default)]
    pub comment: Option<String>,
    #[serde(default, deserialize_with = "deserialize_list")]
    pub acl: Vec<String>,
}

impl Keyed for EnumType {
    fn key(&self) -> String {
        identity(&[&self.schema, &self.name])
    }
}

/// A CHECK constraint of a domain. Key inside [`Domain::checks`]: its name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainCheck {
    pub name: String,
    /// `pg_get_constraintdef(oid)`, e.g. `CHECK (VALUE > 0)`.
    pub definition: String,
    #[serde(default = "yes")]
    pub validated: bool,
}

impl Keyed for DomainCheck {
    fn key(&self) -> String {
        self.name.clone()
    }
}

/// A domain. Key: `"schema"."name"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Domain {
    pub schema: String,
    pub name: String,
    /// The owning role (`pg_get_userbyid`): state, never reported as a change; the
    /// rollback re-creates the object as this role. `None` in snapshots taken before
    /// pg_migsafe 0.2.0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// `format_type(typbasetype, typtypmod)`.
    pub base_type: String,
    #[serde(default)]
    pub collation: Option<String>,
    #[serde(default)]
    pub not_null: bool,
    #[serde(default)]
    pub default: Option<String>,
    #[serde(default, deserialize_with = "deserialize_keyed")]
    pub checks: BTreeMap<String, DomainCheck>,
    #[serde(default)]
    pub comment: Option<String>,
    #[serde(default, deserialize_with = "deserialize_list")]
    pub acl: Vec<String>,
}

impl Keyed for Domain {
    fn key(&self) -> String {
        identity(&[&self.schema, &self.name])
    }
}

/// `prokind` (aggregates are not part of the model).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FunctionKind {
    #[serde(alias = "f")]
    Function,
    #[serde(alias = "p")]
    Procedure,
    #[serde(alias = "w")]
    Window,
}

/// A function or procedure. Key: `"schema"."name"(arguments)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Function {
    pub schema: String,
    pub name: String,
    /// The owning role (`pg_get_userbyid`): state, never reported as a change; the
    /// rollback re-creates the object as this role. `None` in snapshots taken before
    /// pg_migsafe 0.2.0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    pub kind: FunctionKind,
    /// `pg_get_function_identity_arguments(oid)`, e.g. `a integer, b text`.
    #[serde(default)]
    pub arguments: String,
    /// `pg_get_function_result(oid)`; `None` for procedures.
    #[serde(default)]
    pub result: Option<String>,
    /// `pg_get_functiondef(oid)`: a complete CREATE OR REPLACE statement.
    pub definition: String,
    /// A hash of the body (e.g. `md5(prosrc)`), for quick comparison and display.
    #[serde(default)]
    pub body_hash: String,
    #[serde(default)]
    pub comment: Option<String>,
    #[serde(default, deserialize_with = "deserialize_list")]
    pub acl: Vec<String>,
}

impl Keyed for Function {
    fn key(&self) -> String {
        format!(
            "{}({})",
            identity(&[&self.schema, &self.name]),
            self.arguments
        )
    }
}

impl Function {
    /// `procedure` or `function` (window functions are functions), as in DDL.
    pub fn sql_kind(&self) -> &'static str {
        match self.kind {
            FunctionKind::Procedure => "PROCEDURE",
            _ => "FUNCTION",
        }
    }
}

/// A trigger. Key: `"name" on "schema"."table"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trigger {
    pub table: String,
    pub name: String,
    /// `pg_get_triggerdef(oid)`: a complete CREATE TRIGGER statement.
    pub definition: String,
    /// `tgenabled`: `O` (origin, the default), `D`, `R` or `A`.
    #[serde(default = "origin")]
    pub enabled: String,
    /// Cloned onto a partition from its parent's trigger.
    #[serde(default)]
    pub inherited: bool,
    #[serde(default)]
    pub comment: Option<String>,
}

fn origin() -> String {
    "O".into()
}

impl Keyed for Trigger {
    fn key(&self) -> String {
        format!("{} on {}", identity(&[&self.name]), self.table)
    }
}

/// A row-level security policy, in the pieces pg_policies shows. Key:
/// `"name" on "schema"."table"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    pub table: String,
    pub name: String,
    #[serde(default = "yes")]
    pub permissive: bool,
    /// `ALL`, `SELECT`, `INSERT`, `UPDATE` or `DELETE`.
    #[serde(default = "all_cmd")]
    pub command: String,
    /// Role names; `public` means PUBLIC.
    #[serde(default, deserialize_with = "deserialize_list")]
    pub roles: Vec<String>,
    #[serde(default)]
    pub using: Option<String>,
    #[serde(default)]
    pub with_check: Option<String>,
    #[serde(default)]
    pub comment: Option<String>,
}

fn all_cmd() -> String {
    "ALL".into()
}

impl Keyed for Policy {
    fn key(&self) -> String {
        format!("{} on {}", identity(&[&self.name]), self.table)
    }
}

/// The schema name part of a `"schema"."name"…` key, if it parses.
pub fn schema_of(key: &str) -> Option<String> {
    parse_identity_with_tail(key)
        .ok()
        .and_then(|(parts, _)| parts.into_iter().next())
}

/// Could a role holding the privileges of `roles` (role names; `""` stands for
/// PUBLIC) read a sequence's position, by the sequence's ACL (`aclitem` texts, the
/// owner's default included)? SELECT (`r`) or USAGE (`U`) is needed, as for
/// `pg_sequences.last_value`. An item that does not parse grants nothing.
pub fn may_read_sequence(acl: &[String], roles: &BTreeSet<String>) -> bool {
    acl.iter().filter_map(|i| parse_acl_item(i)).any(|item| {
        roles.contains(&item.grantee) && item.privileges.iter().any(|(c, _)| *c == 'r' || *c == 'U')
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc() -> serde_json::Value {
        json!({
          "schemas": [{"name": "public", "acl": ["=U/postgres"]}],
          "tables": [{"schema": "public", "name": "my table", "persistence": "u",
                      "inherits": null, "rls_enabled": true,
                      "columns": [
                        {"name": "id", "position": 1, "type": "bigint", "base_type": "int8",
                         "type_category": "N", "not_null": true, "identity": "a"},
                        {"name": "Name", "position": 3, "type": "character varying(20)",
                         "typmod": 24, "collation": "\"C\"", "default": "'x'::character varying"}
                      ]}],
          "constraints": [{"table": "\"public\".\"my table\"", "name": "pk", "kind": "p",
                           "definition": "PRIMARY KEY (id)"}],
          "indexes": [{"schema": "public", "name": "pk", "table": "\"public\".\"my table\"",
                       "definition": "CREATE UNIQUE INDEX pk ON public.\"my table\" USING btree (id)",
                       "unique": true, "constraint": true}],
          "sequences": [{"schema": "public", "name": "s", "data_type": "bigint", "start": 1,
                         "increment": 1, "min": 1, "max": 100, "cache": 1, "last_value": null}],
          "views": [{"schema": "public", "name": "v", "definition": " SELECT 1;",
                     "depends_on": ["\"public\".\"my table\""]}],
          "enums": [{"schema": "public", "name": "mood", "labels": ["sad", "ok"]}],
          "domains": [{"schema": "public", "name": "d", "base_type": "integer",
                       "checks": [{"name": "d_check", "definition": "CHECK (VALUE > 0)"}]}],
          "functions": [{"schema": "public", "name": "f", "kind": "p", "arguments": "a integer",
                         "definition": "CREATE OR REPLACE PROCEDURE public.f(a integer) ...",
                         "body_hash": "abc"}],
          "triggers": [{"table": "\"public\".\"my table\"", "name": "t",
                        "definition": "CREATE TRIGGER t ..."}],
          "policies": [{"table": "\"public\".\"my table\"", "name": "p", "roles": ["public"],
                        "using": "true"}]
        })
    }

    #[test]
    fn deserializes_the_documented_document_with_catalog_codes() {
        let s: Schema = serde_json::from_value(doc()).unwrap();
        let t = &s.tables["\"public\".\"my table\""];
        assert_eq!(t.persistence, Persistence::Unlogged);
        assert!(t.inherits.is_empty());
        assert!(t.rls_enabled && !t.rls_forced);
        assert_eq!(t.column_order(), ["id", "Name"]);
        assert_eq!(t.columns["id"].identity, Some(IdentityKind::Always));
        assert_eq!(t.columns["id"].type_category, Some('N'));
        assert_eq!(t.columns["id"].typmod, -1);
        assert!(t.columns["Name"].local);
        assert_eq!(t.column_key("Name"), "\"public\".\"my table\".\"Name\"");
        assert!(t.may_have_data());
        assert_eq!(
            s.constraints["\"pk\" on \"public\".\"my table\""].kind,
            ConstraintKind::PrimaryKey
        );
        assert!(s.constraints["\"pk\" on \"public\".\"my table\""].validated);
        assert!(s.indexes["\"public\".\"pk\""].constraint);
        assert_eq!(
            s.functions["\"public\".\"f\"(a integer)"].kind,
            FunctionKind::Procedure
        );
        assert_eq!(
            s.functions["\"public\".\"f\"(a integer)"].sql_kind(),
            "PROCEDURE"
        );
        assert_eq!(s.triggers["\"t\" on \"public\".\"my table\""].enabled, "O");
        assert_eq!(
            s.policies["\"p\" on \"public\".\"my table\""].command,
            "ALL"
        );
        assert!(s.domains["\"public\".\"d\""].checks["d_check"].validated);
        assert_eq!(s.enums["\"public\".\"mood\""].labels, ["sad", "ok"]);
        assert_eq!(s.schemas["\"public\""].acl, ["=U/postgres"]);
        assert_eq!(s.object_count(), 13);
    }

    #[test]
    fn canonical_json_round_trips_and_is_deterministic() {
        let s: Schema = serde_json::from_value(doc()).unwrap();
        let j = s.to_json();
        let back = Schema::from_json(&j).unwrap();
        assert_eq!(back, s);
        assert_eq!(back.to_json(), j);
        // Keys in the object form are ignored and recomputed from the names.
        let mut v: serde_json::Value = serde_json::from_str(&j).unwrap();
        let tables = v["tables"].as_object_mut().unwrap();
        let t = tables.remove("\"public\".\"my table\"").unwrap();
        tables.insert("whatever".into(), t);
        let again: Schema = serde_json::from_value(v).unwrap();
        assert_eq!(again, s);
    }

    #[test]
    fn duplicates_and_unknown_sections_are_refused() {
        let e = Schema::from_json(r#"{"schemas": [{"name": "a"}, {"name": "a"}]}"#).unwrap_err();
        assert!(e.to_string().contains("duplicate object \"a\""), "{e}");
        assert!(Schema::from_json(r#"{"tabels": []}"#).is_err());
        assert!(Schema::from_json(r#"{"tables": 3}"#).is_err());
        let bad_kind = r#"{"constraints": [{"table": "\"s\".\"t\"", "name": "c", "kind": "z", "definition": ""}]}"#;
        assert!(Schema::from_json(bad_kind).is_err());
    }

    #[test]
    fn empty_and_null_sections() {
        assert_eq!(Schema::from_json("{}").unwrap(), Schema::default());
        assert_eq!(
            Schema::from_json(r#"{"tables": null, "views": {}}"#).unwrap(),
            Schema::default()
        );
    }

    #[test]
    fn keys_quote_every_part() {
        let f = Function {
            owner: None,
            schema: "S".into(),
            name: "my \"f\"".into(),
            kind: FunctionKind::Function,
            arguments: "integer".into(),
            result: Some("integer".into()),
            definition: String::new(),
            body_hash: String::new(),
            comment: None,
            acl: vec![],
        };
        assert_eq!(f.key(), "\"S\".\"my \"\"f\"\"\"(integer)");
        assert_eq!(schema_of(&f.key()).as_deref(), Some("S"));
        let mut s = Schema::default();
        s.insert(f);
        assert!(s.functions.contains_key("\"S\".\"my \"\"f\"\"\"(integer)"));
    }

    #[test]
    fn sequence_values_are_hidden_from_roles_that_cannot_read_them() {
        let roles = |r: &[&str]| {
            r.iter()
                .map(|s| s.to_string())
                .collect::<BTreeSet<String>>()
        };
        let acl = vec![
            "owner=rwU/owner".to_string(),
            "reader=r/owner".to_string(),
            "\"odd=name\"=U/owner".to_string(),
            "writer=w/owner".to_string(),
        ];
        assert!(may_read_sequence(&acl, &roles(&["", "owner"])));
        assert!(may_read_sequence(&acl, &roles(&["", "reader"])));
        assert!(may_read_sequence(&acl, &roles(&["", "odd=name"])));
        assert!(!may_read_sequence(&acl, &roles(&["", "writer"])));
        assert!(!may_read_sequence(&acl, &roles(&["", "someone"])));
        assert!(may_read_sequence(&["=r/owner".to_string()], &roles(&[""])));
        assert!(!may_read_sequence(
            &["garbage".to_string()],
            &roles(&["", "garbage"])
        ));

        let mut s = Schema::from_json(
            r#"{"sequences": [
                 {"schema": "public", "name": "open", "data_type": "bigint", "start": 1, "increment": 1,
                  "min": 1, "max": 100, "cache": 1, "last_value": 7, "acl": ["=r/owner", "owner=rwU/owner"]},
                 {"schema": "public", "name": "closed", "data_type": "bigint", "start": 1, "increment": 1,
                  "min": 1, "max": 100, "cache": 1, "last_value": 9, "acl": ["owner=rwU/owner"]}]}"#,
        )
        .unwrap();
        s.hide_sequence_values(&roles(&["", "mallory"]));
        assert_eq!(s.sequences[r#""public"."open""#].last_value, Some(7));
        assert_eq!(s.sequences[r#""public"."closed""#].last_value, None);
    }
}
