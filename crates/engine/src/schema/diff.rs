//! Schema diff: what changed between two [`Schema`]s, one [`Change`] per object.
//!
//! Objects are matched by identity key. An object present on one side only is
//! `added` or `removed` (its whole serialized form is the before/after value); an
//! object on both sides whose *core* differs is `changed`, with the two cores as
//! before/after. The core is the object's serialized form without:
//!
//! * `comment` and `acl`, reported as separate changes of kind `comment` and
//!   `privileges` whose identity is `<kind> <identity>` (e.g.
//!   `column "public"."t"."c"`), so that a grant does not look like a table change;
//! * the columns of a table, diffed one by one under kind `column`;
//! * a column's `position`: the order of the columns two snapshots have in common is
//!   compared separately and reported as one `column order` change of the table. A
//!   column dropped and re-created at the end of its table therefore shows up as a
//!   `column order` change only, not as a change of the column;
//! * state that is not schema: a table's or materialized view's `has_data`, a
//!   sequence's `last_value`.
//!
//! `loses_data` says whether going from `before` to `after` destroys stored values:
//! a removed table, column, sequence or populated materialized view (unless the
//! snapshot knows the table was empty), a lossy column type change (judged by
//! [`crate::typechange`] when the column carries its base type name,
//! category and typmod; assumed lossy otherwise), a plain column becoming generated
//! (its values are replaced), and enum labels that disappear. Everything else is
//! `false`.
//!
//! Output order is deterministic: by object family (schemas, types, sequences,
//! functions, tables with their columns, constraints, indexes, views, triggers,
//! policies), then by identity.

use super::model::*;
use crate::typechange::{self, ColType, TypeChange};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// What kind of object a [`Change`] (or a rollback statement) is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ObjectKind {
    #[serde(rename = "schema")]
    Schema,
    #[serde(rename = "table")]
    Table,
    #[serde(rename = "column")]
    Column,
    #[serde(rename = "column order")]
    ColumnOrder,
    #[serde(rename = "constraint")]
    Constraint,
    #[serde(rename = "index")]
    Index,
    #[serde(rename = "sequence")]
    Sequence,
    #[serde(rename = "view")]
    View,
    #[serde(rename = "materialized view")]
    MaterializedView,
    #[serde(rename = "enum")]
    Enum,
    #[serde(rename = "domain")]
    Domain,
    #[serde(rename = "function")]
    Function,
    #[serde(rename = "procedure")]
    Procedure,
    #[serde(rename = "trigger")]
    Trigger,
    #[serde(rename = "policy")]
    Policy,
    #[serde(rename = "comment")]
    Comment,
    #[serde(rename = "privileges")]
    Privileges,
}

impl ObjectKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectKind::Schema => "schema",
            ObjectKind::Table => "table",
            ObjectKind::Column => "column",
            ObjectKind::ColumnOrder => "column order",
            ObjectKind::Constraint => "constraint",
            ObjectKind::Index => "index",
            ObjectKind::Sequence => "sequence",
            ObjectKind::View => "view",
            ObjectKind::MaterializedView => "materialized view",
            ObjectKind::Enum => "enum",
            ObjectKind::Domain => "domain",
            ObjectKind::Function => "function",
            ObjectKind::Procedure => "procedure",
            ObjectKind::Trigger => "trigger",
            ObjectKind::Policy => "policy",
            ObjectKind::Comment => "comment",
            ObjectKind::Privileges => "privileges",
        }
    }

    pub fn of_view(v: &View) -> ObjectKind {
        if v.materialized {
            ObjectKind::MaterializedView
        } else {
            ObjectKind::View
        }
    }

    pub fn of_function(f: &Function) -> ObjectKind {
        if f.kind == FunctionKind::Procedure {
            ObjectKind::Procedure
        } else {
            ObjectKind::Function
        }
    }
}

impl fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Added,
    Removed,
    Changed,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Added => "added",
            Action::Removed => "removed",
            Action::Changed => "changed",
        }
    }
}

/// One difference between two schemas.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    pub kind: ObjectKind,
    pub identity: String,
    pub action: Action,
    /// `null` when added.
    pub before: Value,
    /// `null` when removed.
    pub after: Value,
    pub loses_data: bool,
}

/// The comment and privileges of an object, whatever its kind.
pub trait Annotated {
    fn comment(&self) -> Option<&str>;
    fn acl(&self) -> &[String] {
        &[]
    }
}

macro_rules! annotated {
    ($t:ty, acl) => {
        impl Annotated for $t {
            fn comment(&self) -> Option<&str> {
                self.comment.as_deref()
            }
            fn acl(&self) -> &[String] {
                &self.acl
            }
        }
    };
    ($t:ty) => {
        impl Annotated for $t {
            fn comment(&self) -> Option<&str> {
                self.comment.as_deref()
            }
        }
    };
}
annotated!(Namespace, acl);
annotated!(Table, acl);
annotated!(Column, acl);
annotated!(Sequence, acl);
annotated!(View, acl);
annotated!(EnumType, acl);
annotated!(Domain, acl);
annotated!(Function, acl);
annotated!(Constraint);
annotated!(Index);
annotated!(Trigger);
annotated!(Policy);

/// Fields that never take part in the core comparison.
const ALWAYS_STRIPPED: &[&str] = &["comment", "acl"];

/// `core(a, strip) == core(b, strip)`, without serializing equal objects.
pub fn same_core<T: Serialize + PartialEq>(a: &T, b: &T, strip: &[&str]) -> bool {
    a == b || core(a, strip) == core(b, strip)
}

/// The serialized object without `strip`ped fields (and comment/acl).
pub fn core<T: Serialize>(object: &T, strip: &[&str]) -> Value {
    let mut v = serde_json::to_value(object).expect("the model always serializes");
    if let Value::Object(m) = &mut v {
        for k in ALWAYS_STRIPPED.iter().chain(strip) {
            m.remove(*k);
        }
    }
    v
}

/// Fields of each object type that are state or reported separately.
pub const TABLE_STRIP: &[&str] = &["columns", "has_data", "owner"];
pub const COLUMN_STRIP: &[&str] = &["position"];
pub const SEQUENCE_STRIP: &[&str] = &["last_value", "owner"];
pub const VIEW_STRIP: &[&str] = &["has_data", "owner"];
/// Owners are state: the rollback uses them, the diff does not report them.
pub const OWNER_STRIP: &[&str] = &["owner"];

fn full<T: Serialize>(object: &T) -> Value {
    serde_json::to_value(object).expect("the model always serializes")
}

/// Whether changing a column's type from `from` to `to` may lose values. Uses
/// [`typechange::classify`] when both columns carry `base_type` and `type_category`
/// (binary coercibility unknown, so "free" casts outside its own table count as
/// rewrites, which are not losses); without those facts any type change is lossy.
pub fn type_change_is_lossy(from: &Column, to: &Column) -> bool {
    if from.type_name == to.type_name {
        return false;
    }
    match (
        &from.base_type,
        from.type_category,
        &to.base_type,
        to.type_category,
    ) {
        (Some(a), Some(ac), Some(b), Some(bc)) => matches!(
            typechange::classify(
                &ColType::new(a, ac, from.typmod),
                &ColType::new(b, bc, to.typmod),
                false,
                false,
            ),
            TypeChange::Lossy(_)
        ),
        _ => true,
    }
}

/// Whether turning column `from` into `to` (same name) destroys stored values of a
/// table that may hold rows.
pub fn column_change_loses_data(from: &Column, to: &Column) -> bool {
    type_change_is_lossy(from, to) || (from.generated.is_none() && to.generated.is_some())
}

struct Differ {
    out: Vec<Change>,
}

impl Differ {
    fn push(
        &mut self,
        kind: ObjectKind,
        identity: String,
        action: Action,
        before: Value,
        after: Value,
        loses_data: bool,
    ) {
        self.out.push(Change {
            kind,
            identity,
            action,
            before,
            after,
            loses_data,
        });
    }

    /// Comment and privilege changes of an object present on both sides.
    fn annotations<T: Annotated>(&mut self, kind: ObjectKind, key: &str, a: &T, b: &T) {
        if a.comment() != b.comment() {
            self.push(
                ObjectKind::Comment,
                format!("{kind} {key}"),
                Action::Changed,
                a.comment().map_or(Value::Null, |c| Value::String(c.into())),
                b.comment().map_or(Value::Null, |c| Value::String(c.into())),
                false,
            );
        }
        let (mut x, mut y) = (a.acl().to_vec(), b.acl().to_vec());
        x.sort();
        y.sort();
        if x != y {
            self.push(
                ObjectKind::Privileges,
                format!("{kind} {key}"),
                Action::Changed,
                Value::from(a.acl().to_vec()),
                Value::from(b.acl().to_vec()),
                false,
            );
        }
    }

    /// The generic matching of one map.
    #[allow(clippy::too_many_arguments)]
    fn objects<T: Serialize + Annotated + PartialEq>(
        &mut self,
        before: &BTreeMap<String, T>,
        after: &BTreeMap<String, T>,
        kind: impl Fn(&T) -> ObjectKind,
        strip: &[&str],
        loses_on_remove: impl Fn(&T) -> bool,
        loses_on_change: impl Fn(&T, &T) -> bool,
    ) {
        let keys: BTreeSet<&String> = before.keys().chain(after.keys()).collect();
        for key in keys {
            match (before.get(key), after.get(key)) {
                (Some(a), None) => self.push(
                    kind(a),
                    key.clone(),
                    Action::Removed,
                    full(a),
                    Value::Null,
                    loses_on_remove(a),
                ),
                (None, Some(b)) => self.push(
                    kind(b),
                    key.clone(),
                    Action::Added,
                    Value::Null,
                    full(b),
                    false,
                ),
                (Some(a), Some(b)) if a == b => {}
                (Some(a), Some(b)) => {
                    let (ca, cb) = (core(a, strip), core(b, strip));
                    if ca != cb {
                        // A view that became materialized (or back) is reported under its new kind.
                        self.push(
                            kind(b),
                            key.clone(),
                            Action::Changed,
                            ca,
                            cb,
                            loses_on_change(a, b),
                        );
                    }
                    self.annotations(kind(b), key, a, b);
                }
                (None, None) => unreachable!("key comes from one of the maps"),
            }
        }
    }

    fn columns(&mut self, a: &Table, b: &Table) {
        let data = a.may_have_data();
        let names: BTreeSet<&String> = a.columns.keys().chain(b.columns.keys()).collect();
        for name in names {
            let key = a.column_key(name);
            match (a.columns.get(name), b.columns.get(name)) {
                (Some(x), None) => self.push(
                    ObjectKind::Column,
                    key,
                    Action::Removed,
                    full(x),
                    Value::Null,
                    data,
                ),
                (None, Some(y)) => self.push(
                    ObjectKind::Column,
                    key,
                    Action::Added,
                    Value::Null,
                    full(y),
                    false,
                ),
                (Some(x), Some(y)) if x == y => {}
                (Some(x), Some(y)) => {
                    let (cx, cy) = (core(x, COLUMN_STRIP), core(y, COLUMN_STRIP));
                    if cx != cy {
                        let loses = data && column_change_loses_data(x, y);
                        self.push(
                            ObjectKind::Column,
                            key.clone(),
                            Action::Changed,
                            cx,
                            cy,
                            loses,
                        );
                    }
                    self.annotations(ObjectKind::Column, &key, x, y);
                }
                (None, None) => unreachable!(),
            }
        }
        let (oa, ob) = (a.column_order(), b.column_order());
        let common_a: Vec<&String> = oa.iter().filter(|c| b.columns.contains_key(*c)).collect();
        let common_b: Vec<&String> = ob.iter().filter(|c| a.columns.contains_key(*c)).collect();
        if common_a != common_b {
            self.push(
                ObjectKind::ColumnOrder,
                a.key(),
                Action::Changed,
                Value::from(oa),
                Value::from(ob),
                false,
            );
        }
    }
}

fn never<T>(_: &T) -> bool {
    false
}
fn never2<T>(_: &T, _: &T) -> bool {
    false
}

/// Every difference between `before` and `after` (see the module documentation).
pub fn diff(before: &Schema, after: &Schema) -> Vec<Change> {
    let mut d = Differ { out: Vec::new() };
    d.objects(
        &before.schemas,
        &after.schemas,
        |_| ObjectKind::Schema,
        OWNER_STRIP,
        never,
        never2,
    );
    d.objects(
        &before.enums,
        &after.enums,
        |_| ObjectKind::Enum,
        OWNER_STRIP,
        never,
        |a: &EnumType, b: &EnumType| a.labels.iter().any(|l| !b.labels.contains(l)),
    );
    d.objects(
        &before.domains,
        &after.domains,
        |_| ObjectKind::Domain,
        OWNER_STRIP,
        never,
        never2,
    );
    d.objects(
        &before.sequences,
        &after.sequences,
        |_| ObjectKind::Sequence,
        SEQUENCE_STRIP,
        |_| true,
        never2,
    );
    d.objects(
        &before.functions,
        &after.functions,
        ObjectKind::of_function,
        OWNER_STRIP,
        never,
        never2,
    );
    let tables_start = d.out.len();
    d.objects(
        &before.tables,
        &after.tables,
        |_| ObjectKind::Table,
        TABLE_STRIP,
        Table::may_have_data,
        never2,
    );
    for (key, a) in &before.tables {
        if let Some(b) = after.tables.get(key).filter(|b| a.columns != b.columns) {
            d.columns(a, b);
        }
    }
    // Keep each table's column changes right after the table's own change.
    d.out[tables_start..].sort_by_key(table_of);
    d.objects(
        &before.constraints,
        &after.constraints,
        |_| ObjectKind::Constraint,
        &[],
        never,
        never2,
    );
    d.objects(
        &before.indexes,
        &after.indexes,
        |_| ObjectKind::Index,
        &[],
        never,
        never2,
    );
    d.objects(
        &before.views,
        &after.views,
        ObjectKind::of_view,
        VIEW_STRIP,
        |v: &View| v.materialized && v.has_data != Some(false),
        never2,
    );
    d.objects(
        &before.triggers,
        &after.triggers,
        |_| ObjectKind::Trigger,
        &[],
        never,
        never2,
    );
    d.objects(
        &before.policies,
        &after.policies,
        |_| ObjectKind::Policy,
        &[],
        never,
        never2,
    );
    d.out
}

/// Sort key that groups a table's changes: (table identity, rank within the table).
fn table_of(c: &Change) -> (String, u8, String) {
    let id = c
        .identity
        .strip_prefix("table ")
        .or_else(|| c.identity.strip_prefix("column "))
        .unwrap_or(&c.identity);
    let table = match super::quote::parse_identity(id) {
        Ok(parts) if parts.len() >= 2 => super::quote::identity(&[&parts[0], &parts[1]]),
        _ => id.to_string(),
    };
    let rank = match c.kind {
        ObjectKind::Table => 0,
        _ if c.identity.starts_with("table ") => 1,
        ObjectKind::ColumnOrder => 3,
        _ => 2,
    };
    (table, rank, c.identity.clone())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::schema::quote::identity;

    pub fn table(schema: &str, name: &str, cols: &[(&str, &str)]) -> Table {
        Table {
            schema: schema.into(),
            name: name.into(),
            columns: cols
                .iter()
                .enumerate()
                .map(|(i, (n, t))| (n.to_string(), Column::new(n, i as i32 + 1, t)))
                .collect(),
            ..Default::default()
        }
    }

    /// A schema touching every object kind.
    pub fn sample() -> Schema {
        let mut s = Schema::default();
        s.insert(Namespace {
            owner: None,
            name: "public".into(),
            comment: None,
            acl: vec![],
        });
        let mut users = table(
            "public",
            "users",
            &[
                ("id", "bigint"),
                ("email", "text"),
                ("Full Name", "character varying(20)"),
            ],
        );
        users.columns.get_mut("id").unwrap().not_null = true;
        let fname = users.columns.get_mut("Full Name").unwrap();
        fname.base_type = Some("varchar".into());
        fname.type_category = Some('S');
        fname.typmod = 24;
        s.insert(users);
        s.insert(table(
            "public",
            "orders",
            &[("id", "bigint"), ("user_id", "bigint")],
        ));
        let users_key = identity(&["public", "users"]);
        let orders_key = identity(&["public", "orders"]);
        s.insert(Constraint {
            table: users_key.clone(),
            name: "users_pkey".into(),
            kind: ConstraintKind::PrimaryKey,
            definition: "PRIMARY KEY (id)".into(),
            validated: true,
            deferrable: false,
            deferred: false,
            references: None,
            local: true,
            comment: None,
        });
        s.insert(Constraint {
            table: orders_key.clone(),
            name: "orders_user_fk".into(),
            kind: ConstraintKind::ForeignKey,
            definition: "FOREIGN KEY (user_id) REFERENCES public.users(id)".into(),
            validated: true,
            deferrable: false,
            deferred: false,
            references: Some(users_key.clone()),
            local: true,
            comment: None,
        });
        s.insert(Index {
            schema: "public".into(),
            name: "users_email_idx".into(),
            table: users_key.clone(),
            definition: "CREATE INDEX users_email_idx ON public.users USING btree (email)".into(),
            valid: true,
            unique: false,
            constraint: false,
            inherited: false,
            comment: None,
        });
        s.insert(Sequence {
            owner: None,
            schema: "public".into(),
            name: "counter".into(),
            data_type: "bigint".into(),
            start: 1,
            increment: 1,
            min: 1,
            max: i64::MAX,
            cache: 1,
            cycle: false,
            owned_by: None,
            last_value: Some(5),
            comment: None,
            acl: vec![],
        });
        s.insert(View {
            owner: None,
            schema: "public".into(),
            name: "user_emails".into(),
            materialized: false,
            definition: " SELECT users.email FROM users;".into(),
            depends_on: vec![users_key.clone()],
            has_data: None,
            comment: None,
            acl: vec![],
        });
        s.insert(EnumType {
            owner: None,
            schema: "public".into(),
            name: "mood".into(),
            labels: vec!["sad".into(), "ok".into()],
            comment: None,
            acl: vec![],
        });
        s.insert(Domain {
            owner: None,
            schema: "public".into(),
            name: "posint".into(),
            base_type: "integer".into(),
            collation: None,
            not_null: false,
            default: None,
            checks: [(
                "posint_check".to_string(),
                DomainCheck {
                    name: "posint_check".into(),
                    definition: "CHECK (VALUE > 0)".into(),
                    validated: true,
                },
            )]
            .into(),
            comment: None,
            acl: vec![],
        });
        s.insert(Function {
            owner: None,
            schema: "public".into(),
            name: "touch".into(),
            kind: FunctionKind::Function,
            arguments: "".into(),
            result: Some("trigger".into()),
            definition: "CREATE OR REPLACE FUNCTION public.touch()\n RETURNS trigger\n LANGUAGE plpgsql\nAS $function$BEGIN RETURN NEW; END$function$\n".into(),
            body_hash: "h1".into(),
            comment: None,
            acl: vec![],
        });
        s.insert(Trigger {
            table: users_key.clone(),
            name: "users_touch".into(),
            definition: "CREATE TRIGGER users_touch BEFORE UPDATE ON public.users FOR EACH ROW EXECUTE FUNCTION touch()".into(),
            enabled: "O".into(),
            inherited: false,
            comment: None,
        });
        s.insert(Policy {
            table: users_key,
            name: "own".into(),
            permissive: true,
            command: "ALL".into(),
            roles: vec!["public".into()],
            using: Some("(email = CURRENT_USER)".into()),
            with_check: None,
            comment: None,
        });
        s
    }

    fn find<'a>(changes: &'a [Change], kind: ObjectKind, identity: &str) -> &'a Change {
        changes
            .iter()
            .find(|c| c.kind == kind && c.identity == identity)
            .unwrap_or_else(|| panic!("no {kind} change for {identity} in {changes:#?}"))
    }

    #[test]
    fn identical_schemas_have_no_diff() {
        let s = sample();
        assert!(diff(&s, &s).is_empty());
        assert!(diff(&Schema::default(), &Schema::default()).is_empty());
    }

    #[test]
    fn add_and_remove_of_every_kind() {
        let s = sample();
        let empty = Schema::default();
        let added = diff(&empty, &s);
        let removed = diff(&s, &empty);
        // 1 schema, 2 tables, 2 constraints, 1 index, 1 sequence, 1 view, 1 enum,
        // 1 domain, 1 function, 1 trigger, 1 policy: columns ride with their tables.
        assert_eq!(added.len(), 13, "{added:#?}");
        assert_eq!(removed.len(), 13);
        for (kind, id) in [
            (ObjectKind::Schema, "\"public\""),
            (ObjectKind::Table, "\"public\".\"users\""),
            (
                ObjectKind::Constraint,
                "\"orders_user_fk\" on \"public\".\"orders\"",
            ),
            (ObjectKind::Index, "\"public\".\"users_email_idx\""),
            (ObjectKind::Sequence, "\"public\".\"counter\""),
            (ObjectKind::View, "\"public\".\"user_emails\""),
            (ObjectKind::Enum, "\"public\".\"mood\""),
            (ObjectKind::Domain, "\"public\".\"posint\""),
            (ObjectKind::Function, "\"public\".\"touch\"()"),
            (
                ObjectKind::Trigger,
                "\"users_touch\" on \"public\".\"users\"",
            ),
            (ObjectKind::Policy, "\"own\" on \"public\".\"users\""),
        ] {
            let a = find(&added, kind, id);
            assert_eq!(a.action, Action::Added);
            assert!(a.before.is_null() && !a.after.is_null());
            assert!(!a.loses_data);
            let r = find(&removed, kind, id);
            assert_eq!(r.action, Action::Removed);
            assert!(!r.before.is_null() && r.after.is_null());
        }
        // Removal data-loss flags.
        assert!(find(&removed, ObjectKind::Table, "\"public\".\"users\"").loses_data);
        assert!(find(&removed, ObjectKind::Sequence, "\"public\".\"counter\"").loses_data);
        assert!(!find(&removed, ObjectKind::View, "\"public\".\"user_emails\"").loses_data);
        assert!(
            !find(
                &removed,
                ObjectKind::Index,
                "\"public\".\"users_email_idx\""
            )
            .loses_data
        );
        // A table's value includes its columns.
        let t = find(&added, ObjectKind::Table, "\"public\".\"users\"");
        assert_eq!(t.after["columns"]["email"]["type"], "text");
    }

    #[test]
    fn empty_table_or_unpopulated_matview_removal_loses_nothing() {
        let mut a = sample();
        a.tables.get_mut("\"public\".\"orders\"").unwrap().has_data = Some(false);
        let mut mv = a.views["\"public\".\"user_emails\""].clone();
        mv.name = "mv".into();
        mv.materialized = true;
        mv.has_data = Some(true);
        a.insert(mv.clone());
        mv.name = "mv_empty".into();
        mv.has_data = Some(false);
        a.insert(mv);
        let mut b = a.clone();
        b.tables.remove("\"public\".\"orders\"");
        b.views.remove("\"public\".\"mv\"");
        b.views.remove("\"public\".\"mv_empty\"");
        let d = diff(&a, &b);
        assert!(!find(&d, ObjectKind::Table, "\"public\".\"orders\"").loses_data);
        assert!(find(&d, ObjectKind::MaterializedView, "\"public\".\"mv\"").loses_data);
        assert!(!find(&d, ObjectKind::MaterializedView, "\"public\".\"mv_empty\"").loses_data);
    }

    #[test]
    fn changes_of_every_kind() {
        let a = sample();
        let mut b = a.clone();
        b.tables
            .get_mut("\"public\".\"users\"")
            .unwrap()
            .rls_enabled = true;
        b.constraints
            .get_mut("\"users_pkey\" on \"public\".\"users\"")
            .unwrap()
            .definition = "PRIMARY KEY (id, email)".into();
        b.indexes
            .get_mut("\"public\".\"users_email_idx\"")
            .unwrap()
            .valid = false;
        b.sequences
            .get_mut("\"public\".\"counter\"")
            .unwrap()
            .increment = 2;
        b.views
            .get_mut("\"public\".\"user_emails\"")
            .unwrap()
            .definition = " SELECT 1;".into();
        b.enums
            .get_mut("\"public\".\"mood\"")
            .unwrap()
            .labels
            .push("happy".into());
        b.domains.get_mut("\"public\".\"posint\"").unwrap().not_null = true;
        b.functions
            .get_mut("\"public\".\"touch\"()")
            .unwrap()
            .body_hash = "h2".into();
        b.triggers
            .get_mut("\"users_touch\" on \"public\".\"users\"")
            .unwrap()
            .enabled = "D".into();
        b.policies
            .get_mut("\"own\" on \"public\".\"users\"")
            .unwrap()
            .permissive = false;
        b.schemas.get_mut("\"public\"").unwrap().acl = vec!["=U/postgres".into()];
        let d = diff(&a, &b);
        assert_eq!(d.len(), 11, "{d:#?}");
        assert!(d
            .iter()
            .all(|c| c.action == Action::Changed && !c.loses_data));
        let t = find(&d, ObjectKind::Table, "\"public\".\"users\"");
        assert_eq!(t.before["rls_enabled"], false);
        assert_eq!(t.after["rls_enabled"], true);
        assert!(t.after.get("columns").is_none());
        find(&d, ObjectKind::Privileges, "schema \"public\"");
        find(&d, ObjectKind::Enum, "\"public\".\"mood\"");
    }

    #[test]
    fn state_fields_are_not_changes() {
        let a = sample();
        let mut b = a.clone();
        b.sequences
            .get_mut("\"public\".\"counter\"")
            .unwrap()
            .last_value = Some(999);
        b.tables.get_mut("\"public\".\"users\"").unwrap().has_data = Some(false);
        assert!(diff(&a, &b).is_empty());
    }

    #[test]
    fn column_add_remove_change_and_data_loss() {
        let a = sample();
        let mut b = a.clone();
        let users = b.tables.get_mut("\"public\".\"users\"").unwrap();
        users.columns.remove("email");
        users
            .columns
            .insert("age".into(), Column::new("age", 4, "integer"));
        let fname = users.columns.get_mut("Full Name").unwrap();
        fname.type_name = "character varying(10)".into();
        fname.typmod = 14;
        users.columns.get_mut("id").unwrap().default = Some("42".into());
        let d = diff(&a, &b);
        let removed = find(&d, ObjectKind::Column, "\"public\".\"users\".\"email\"");
        assert_eq!(removed.action, Action::Removed);
        assert!(removed.loses_data);
        let added = find(&d, ObjectKind::Column, "\"public\".\"users\".\"age\"");
        assert_eq!(added.action, Action::Added);
        assert!(!added.loses_data);
        let narrowed = find(&d, ObjectKind::Column, "\"public\".\"users\".\"Full Name\"");
        assert!(narrowed.loses_data, "varchar(20) -> varchar(10) is lossy");
        assert_eq!(narrowed.before["type"], "character varying(20)");
        let default = find(&d, ObjectKind::Column, "\"public\".\"users\".\"id\"");
        assert!(!default.loses_data);
        assert!(
            !d.iter().any(|c| c.kind == ObjectKind::ColumnOrder),
            "{d:#?}"
        );
    }

    #[test]
    fn type_change_loss_uses_typechange_and_is_conservative_without_facts() {
        let mut from = Column::new("c", 1, "character varying(10)");
        from.base_type = Some("varchar".into());
        from.type_category = Some('S');
        from.typmod = 14;
        let mut wider = from.clone();
        wider.type_name = "character varying(20)".into();
        wider.typmod = 24;
        assert!(!type_change_is_lossy(&from, &wider));
        assert!(type_change_is_lossy(&wider, &from));
        let mut text = from.clone();
        text.type_name = "text".into();
        text.base_type = Some("text".into());
        text.typmod = -1;
        assert!(!type_change_is_lossy(&from, &text));
        // Unknown facts: any type change counts as lossy.
        let x = Column::new("c", 1, "integer");
        let y = Column::new("c", 1, "bigint");
        assert!(type_change_is_lossy(&x, &y));
        assert!(!type_change_is_lossy(&x, &x));
        // A plain column becoming generated loses its values; the reverse does not.
        let mut g = x.clone();
        g.generated = Some("1".into());
        assert!(column_change_loses_data(&x, &g));
        assert!(!column_change_loses_data(&g, &x));
        // An empty table loses nothing.
        let mut a = sample();
        a.tables.get_mut("\"public\".\"users\"").unwrap().has_data = Some(false);
        let mut b = a.clone();
        b.tables
            .get_mut("\"public\".\"users\"")
            .unwrap()
            .columns
            .remove("email");
        assert!(!diff(&a, &b)[0].loses_data);
    }

    #[test]
    fn recreated_column_is_a_column_order_change_only() {
        let a = sample();
        let mut b = a.clone();
        let users = b.tables.get_mut("\"public\".\"users\"").unwrap();
        // email dropped and added back: it now comes last, with a new attnum.
        users.columns.get_mut("email").unwrap().position = 7;
        let d = diff(&a, &b);
        assert_eq!(d.len(), 1, "{d:#?}");
        assert_eq!(d[0].kind, ObjectKind::ColumnOrder);
        assert_eq!(d[0].identity, "\"public\".\"users\"");
        assert_eq!(d[0].before, serde_json::json!(["id", "email", "Full Name"]));
        assert_eq!(d[0].after, serde_json::json!(["id", "Full Name", "email"]));
        // Gaps in attnum (a dropped column) are not an order change.
        let mut c = a.clone();
        for col in c
            .tables
            .get_mut("\"public\".\"users\"")
            .unwrap()
            .columns
            .values_mut()
        {
            col.position *= 10;
        }
        assert!(diff(&a, &c).is_empty());
    }

    #[test]
    fn comments_and_privileges_are_separate_changes() {
        let a = sample();
        let mut b = a.clone();
        let users = b.tables.get_mut("\"public\".\"users\"").unwrap();
        users.comment = Some("people".into());
        users.columns.get_mut("email").unwrap().acl = vec!["bob=r/alice".into()];
        b.functions
            .get_mut("\"public\".\"touch\"()")
            .unwrap()
            .comment = Some("x".into());
        let d = diff(&a, &b);
        assert_eq!(d.len(), 3, "{d:#?}");
        let c = find(&d, ObjectKind::Comment, "table \"public\".\"users\"");
        assert_eq!(c.before, Value::Null);
        assert_eq!(c.after, "people");
        let p = find(
            &d,
            ObjectKind::Privileges,
            "column \"public\".\"users\".\"email\"",
        );
        assert_eq!(p.after, serde_json::json!(["bob=r/alice"]));
        find(&d, ObjectKind::Comment, "function \"public\".\"touch\"()");
        // ACL order does not matter.
        let mut x = a.clone();
        x.tables.get_mut("\"public\".\"users\"").unwrap().acl =
            vec!["a=r/o".into(), "b=r/o".into()];
        let mut y = a.clone();
        y.tables.get_mut("\"public\".\"users\"").unwrap().acl =
            vec!["b=r/o".into(), "a=r/o".into()];
        assert!(diff(&x, &y).is_empty());
    }

    #[test]
    fn enum_label_removal_loses_data() {
        let a = sample();
        let mut b = a.clone();
        b.enums.get_mut("\"public\".\"mood\"").unwrap().labels = vec!["ok".into()];
        assert!(diff(&a, &b)[0].loses_data);
    }

    #[test]
    fn view_becoming_materialized_is_reported_under_the_new_kind() {
        let a = sample();
        let mut b = a.clone();
        b.views
            .get_mut("\"public\".\"user_emails\"")
            .unwrap()
            .materialized = true;
        let d = diff(&a, &b);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].kind, ObjectKind::MaterializedView);
    }

    #[test]
    fn table_added_and_table_removed_in_one_diff_and_output_is_grouped() {
        let a = sample();
        let mut b = a.clone();
        b.tables.remove("\"public\".\"orders\"");
        b.insert(table("public", "invoices", &[("id", "bigint")]));
        b.tables
            .get_mut("\"public\".\"users\"")
            .unwrap()
            .columns
            .remove("email");
        b.tables.get_mut("\"public\".\"users\"").unwrap().comment = Some("c".into());
        let d = diff(&a, &b);
        let ids: Vec<(&str, &str)> = d
            .iter()
            .map(|c| (c.kind.as_str(), c.identity.as_str()))
            .collect();
        assert_eq!(
            ids,
            [
                ("table", "\"public\".\"invoices\""),
                ("table", "\"public\".\"orders\""),
                ("comment", "table \"public\".\"users\""),
                ("column", "\"public\".\"users\".\"email\""),
            ]
        );
        assert_eq!(d[0].action, Action::Added);
        assert_eq!(d[1].action, Action::Removed);
    }

    #[test]
    fn changes_serialize_with_readable_kinds() {
        let a = sample();
        let mut b = a.clone();
        b.tables
            .get_mut("\"public\".\"users\"")
            .unwrap()
            .columns
            .get_mut("email")
            .unwrap()
            .position = 9;
        let v = serde_json::to_value(diff(&a, &b)).unwrap();
        assert_eq!(v[0]["kind"], "column order");
        assert_eq!(v[0]["action"], "changed");
        assert_eq!(
            ObjectKind::MaterializedView.to_string(),
            "materialized view"
        );
        assert_eq!(Action::Removed.as_str(), "removed");
    }
}
