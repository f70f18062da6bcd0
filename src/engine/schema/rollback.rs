//! Rollback SQL: the DDL that takes a live schema back to a snapshot.
//!
//! [`rollback_sql`]`(live, target)` compares the two models and returns
//! [`Statement`]s that, run in order in one transaction, turn `live` into `target`.
//! Each statement carries its SQL and what the SQL layer needs to judge it: the
//! object kind and identity key, the [`Operation`], whether it destroys stored values,
//! and for tables and columns the object it drops ([`Statement::drops`], to check for
//! rows or move it to the recycle bin) or re-creates ([`Statement::recreates`], to
//! restore its data from the recycle bin).
//!
//! # Order
//!
//! Dependents are dropped before what they depend on, and created after it:
//!
//! 1. **Drop dependents**: policies, triggers, views and materialized views
//!    (dependent views first; a view is also dropped, to be re-created, when anything
//!    it depends on is dropped or structurally changed), foreign keys (also those
//!    pointing at a table whose keys or column types change), other constraints,
//!    indexes, functions whose result type or kind changes.
//! 2. **Create base objects**: schemas, enums (labels added back with
//!    `ALTER TYPE … ADD VALUE`), domains, sequences, functions (after `SET LOCAL
//!    check_function_bodies = off`, as pg_dump does, because bodies may name tables
//!    created later).
//! 3. **Tables**: detach/disinherit, drop removed tables (children first), create
//!    missing ones (parents first), then per kept table: drop columns, add columns,
//!    alter columns, persistence and row-level-security flags, re-attach/inherit.
//! 4. **Drop base objects** no longer used: sequences (unless owned by a dropped
//!    column or table, which took them along), functions, domains, enums, schemas.
//! 5. **Create dependents**: sequence ownership, indexes, constraints (foreign keys
//!    last), views in dependency order, materialized views' indexes, triggers and
//!    their enabled state, policies, sequence positions (`setval`), comments,
//!    privileges.
//!
//! # What cannot be reverted
//!
//! Some differences have no correct DDL; instead of guessing, they come back as
//! statements with [`Operation::CannotRevert`] whose `sql` is an SQL comment: enum
//! labels to remove or reorder, a changed partition key, a changed generated
//! expression, a domain's base type. [`Operation::Note`] statements are informative
//! comments, e.g. that a re-created column comes back at the end of its table
//! (PostgreSQL cannot reorder columns; the diff reports it as `column order`).
//!
//! # Quoting
//!
//! Every name is written with [`quote_ident`] (PostgreSQL's rules) and every string
//! with [`quote_literal`]. Definitions produced by the server (`pg_get_*def`) are
//! used as they are: the server already quoted them.
//!
//! # Privileges
//!
//! ACL items are compared per grantee (all grantors merged) and reverted with
//! `GRANT`/`REVOKE`. Entries whose grantee is also their grantor are the owner's
//! implicit privileges and are left alone. A re-created object starts from
//! PostgreSQL's defaults (nothing, except `EXECUTE` for PUBLIC on functions and
//! `USAGE` for PUBLIC on types). Grants are made by the role running the rollback,
//! so grantors are not restored.

use super::diff::{core, type_change_is_lossy, ObjectKind, COLUMN_STRIP, SEQUENCE_STRIP, VIEW_STRIP};
use super::model::*;
use super::quote::{ddl_name, parse_identity, qualified, quote_ident, quote_literal};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// What a statement does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    Create,
    Drop,
    Alter,
    Comment,
    Grant,
    Revoke,
    /// A session setting for the rest of the transaction.
    Setting,
    /// Information only; `sql` is an SQL comment.
    Note,
    /// A difference that no DDL can revert correctly; `sql` is an SQL comment.
    CannotRevert,
}

/// A table or column whose stored values a statement drops or re-creates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DataObject {
    /// `table`: identity key of the table.
    Table { table: String },
    /// `table`: identity key of the table; `column`: the column name (unquoted).
    Column { table: String, column: String },
}

/// One step of a rollback.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Statement {
    /// The SQL, without a trailing semicolon; an SQL comment for notes.
    pub sql: String,
    pub kind: ObjectKind,
    /// Identity key of the object (for comments and privileges `<kind> <key>`, as
    /// in the diff).
    pub identity: String,
    pub operation: Operation,
    /// Running it destroys stored values (a table, column, sequence or populated
    /// materialized view dropped, or a lossy type change).
    pub drops_data: bool,
    /// The table or column it drops.
    pub drops: Option<DataObject>,
    /// The table or column it creates again (empty, unless restored).
    pub recreates: Option<DataObject>,
    pub note: Option<String>,
}

impl Statement {
    /// Notes and cannot-revert items are not to be executed.
    pub fn is_executable(&self) -> bool {
        !matches!(self.operation, Operation::Note | Operation::CannotRevert)
    }
}

/// The statements as one script: executable ones end with `;`, notes are comments.
pub fn to_script(statements: &[Statement]) -> String {
    statements
        .iter()
        .map(|s| {
            if s.is_executable() {
                format!("{};\n", s.sql)
            } else {
                format!("{}\n", s.sql)
            }
        })
        .collect()
}

/// The DDL that takes `live` back to `target` (see the module documentation).
pub fn rollback_sql(live: &Schema, target: &Schema) -> Vec<Statement> {
    let mut p = Planner::new(live, target);
    p.drop_dependents();
    p.create_bases();
    p.tables();
    p.drop_bases();
    p.create_dependents();
    p.comments();
    p.privileges();
    p.out
}

/// A view definition as `pg_get_viewdef` prints it, without the trailing `;`.
fn view_body(def: &str) -> &str {
    def.trim().trim_end_matches(';').trim_end()
}

/// Topological order of `keys` (dependencies first), stable in key order; edges to
/// keys outside the set are ignored, cycles are broken where found.
fn topo(keys: &BTreeSet<String>, deps: &dyn Fn(&str) -> Vec<String>) -> Vec<String> {
    fn visit(
        k: &str,
        keys: &BTreeSet<String>,
        deps: &dyn Fn(&str) -> Vec<String>,
        state: &mut BTreeMap<String, bool>,
        out: &mut Vec<String>,
    ) {
        if state.contains_key(k) {
            return;
        }
        state.insert(k.to_string(), false);
        for d in deps(k) {
            if keys.contains(&d) {
                visit(&d, keys, deps, state, out);
            }
        }
        state.insert(k.to_string(), true);
        out.push(k.to_string());
    }
    let mut state = BTreeMap::new();
    let mut out = Vec::new();
    for k in keys {
        visit(k, keys, deps, &mut state, &mut out);
    }
    out
}

/// How a constraint (or domain check) present on both sides is reverted.
#[derive(Debug, PartialEq, Eq)]
enum ConPlan {
    Same,
    /// Live is NOT VALID, the target validated: VALIDATE CONSTRAINT.
    Validate,
    /// Live is validated, the target was NOT VALID: nothing undoes validation.
    KeepValidated,
    Recreate,
}

fn strip_not_valid(def: &str) -> &str {
    def.strip_suffix(" NOT VALID").unwrap_or(def)
}

fn con_plan(l_def: &str, l_valid: bool, t_def: &str, t_valid: bool, rest_equal: bool) -> ConPlan {
    if !rest_equal || strip_not_valid(l_def) != strip_not_valid(t_def) {
        ConPlan::Recreate
    } else if l_valid == t_valid {
        ConPlan::Same
    } else if t_valid {
        ConPlan::Validate
    } else {
        ConPlan::KeepValidated
    }
}

fn constraint_plan(l: &Constraint, t: &Constraint) -> ConPlan {
    let strip = ["definition", "validated"];
    con_plan(&l.definition, l.validated, &t.definition, t.validated, core(l, &strip) == core(t, &strip))
}

fn index_changed(l: &Index, t: &Index) -> bool {
    core(l, &["valid"]) != core(t, &["valid"]) || (!l.valid && t.valid)
}

/// The SQL privilege keyword of an ACL letter.
fn privilege_name(c: char) -> Option<&'static str> {
    Some(match c {
        'r' => "SELECT",
        'w' => "UPDATE",
        'a' => "INSERT",
        'd' => "DELETE",
        'D' => "TRUNCATE",
        'x' => "REFERENCES",
        't' => "TRIGGER",
        'X' => "EXECUTE",
        'U' => "USAGE",
        'C' => "CREATE",
        'c' => "CONNECT",
        'T' => "TEMPORARY",
        'm' => "MAINTAIN",
        's' => "SET",
        'A' => "ALTER SYSTEM",
        _ => return None,
    })
}

/// One parsed ACL item: grantee (`""` = PUBLIC), privileges with their grant
/// option flag, grantor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclItem {
    pub grantee: String,
    pub privileges: Vec<(char, bool)>,
    pub grantor: String,
}

/// Parses `aclitemout` text: `grantee=privs/grantor`, names double-quoted when
/// needed, an empty grantee for PUBLIC, `*` after a letter for the grant option.
pub fn parse_acl_item(s: &str) -> Option<AclItem> {
    fn name(chars: &mut std::iter::Peekable<std::str::Chars>, stop: Option<char>) -> Option<String> {
        let mut out = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next()? {
                    '"' if chars.peek() == Some(&'"') => {
                        chars.next();
                        out.push('"');
                    }
                    '"' => break,
                    c => out.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if Some(c) == stop {
                    break;
                }
                out.push(c);
                chars.next();
            }
        }
        Some(out)
    }
    let mut chars = s.chars().peekable();
    let grantee = name(&mut chars, Some('='))?;
    if chars.next()? != '=' {
        return None;
    }
    let mut privileges: Vec<(char, bool)> = Vec::new();
    loop {
        match chars.next()? {
            '/' => break,
            '*' => privileges.last_mut()?.1 = true,
            c => {
                privilege_name(c)?;
                privileges.push((c, false));
            }
        }
    }
    let grantor = name(&mut chars, None)?;
    if chars.next().is_some() {
        return None;
    }
    Some(AclItem { grantee, privileges, grantor })
}

/// Grantee → privilege letter → with grant option, owners' self-grants left out.
type AclMap = BTreeMap<String, BTreeMap<char, bool>>;

fn acl_map(items: &[String]) -> Result<AclMap, String> {
    let mut m: AclMap = BTreeMap::new();
    for s in items {
        let item = parse_acl_item(s).ok_or_else(|| s.clone())?;
        if item.grantee == item.grantor {
            continue;
        }
        let g = m.entry(item.grantee).or_default();
        for (c, go) in item.privileges {
            let e = g.entry(c).or_insert(false);
            *e |= go;
        }
    }
    Ok(m)
}

fn grantee_sql(g: &str) -> String {
    if g.is_empty() {
        "PUBLIC".into()
    } else {
        quote_ident(g)
    }
}

struct Planner<'a> {
    live: &'a Schema,
    target: &'a Schema,
    out: Vec<Statement>,
    /// `(kind, key)` of everything created (or re-created) by the plan.
    created: BTreeSet<(ObjectKind, String)>,
    /// `(kind, key)` of dependents dropped in step 1.
    dropped: BTreeSet<(ObjectKind, String)>,
    tables_dropped: BTreeSet<String>,
    tables_created: BTreeSet<String>,
    views_dropped: BTreeSet<String>,
    views_created: BTreeSet<String>,
    /// Tables whose keys or column types change, or that are dropped.
    key_changed: BTreeSet<String>,
    functions_recreated: BTreeSet<String>,
}

/// Comments and privileges are tracked per object family, not per variant.
fn family(kind: ObjectKind) -> ObjectKind {
    match kind {
        ObjectKind::MaterializedView => ObjectKind::View,
        ObjectKind::Procedure => ObjectKind::Function,
        k => k,
    }
}

impl<'a> Planner<'a> {
    fn new(live: &'a Schema, target: &'a Schema) -> Self {
        let tables_dropped: BTreeSet<String> =
            live.tables.keys().filter(|k| !target.tables.contains_key(*k)).cloned().collect();
        let tables_created: BTreeSet<String> =
            target.tables.keys().filter(|k| !live.tables.contains_key(*k)).cloned().collect();
        // Tables whose columns lose, change type or change generation.
        let mut structural = BTreeSet::new();
        for (k, l) in &live.tables {
            if let Some(t) = target.tables.get(k) {
                let changed = l.columns.iter().any(|(n, lc)| match t.columns.get(n) {
                    None => true,
                    Some(tc) => {
                        lc.type_name != tc.type_name || lc.collation != tc.collation || lc.generated != tc.generated
                    }
                });
                if changed {
                    structural.insert(k.clone());
                }
            }
        }
        let mut key_changed: BTreeSet<String> = tables_dropped.union(&structural).cloned().collect();
        for (k, l) in &live.constraints {
            if l.kind != ConstraintKind::ForeignKey
                && target.constraints.get(k).is_none_or(|t| constraint_plan(l, t) == ConPlan::Recreate)
            {
                key_changed.insert(l.table.clone());
            }
        }
        for (k, l) in &live.indexes {
            if l.unique && target.indexes.get(k).is_none_or(|t| index_changed(l, t)) {
                key_changed.insert(l.table.clone());
            }
        }
        let mut functions_recreated = BTreeSet::new();
        let mut disturbed: BTreeSet<String> = key_changed.clone();
        for (k, l) in &live.functions {
            match target.functions.get(k) {
                None => {
                    disturbed.insert(k.clone());
                }
                Some(t) if core(l, &[]) != core(t, &[]) && (l.kind != t.kind || l.result != t.result) => {
                    disturbed.insert(k.clone());
                    functions_recreated.insert(k.clone());
                }
                _ => {}
            }
        }
        let mut views_dropped: BTreeSet<String> = live
            .views
            .iter()
            .filter(|(k, l)| target.views.get(*k).is_none_or(|t| core(*l, VIEW_STRIP) != core(t, VIEW_STRIP)))
            .map(|(k, _)| k.clone())
            .collect();
        loop {
            disturbed.extend(views_dropped.iter().cloned());
            let more: Vec<String> = live
                .views
                .iter()
                .filter(|(k, v)| !views_dropped.contains(*k) && v.depends_on.iter().any(|d| disturbed.contains(d)))
                .map(|(k, _)| k.clone())
                .collect();
            if more.is_empty() {
                break;
            }
            views_dropped.extend(more);
        }
        let views_created = target
            .views
            .keys()
            .filter(|k| !live.views.contains_key(*k) || views_dropped.contains(*k))
            .cloned()
            .collect();
        Planner {
            live,
            target,
            out: Vec::new(),
            created: BTreeSet::new(),
            dropped: BTreeSet::new(),
            tables_dropped,
            tables_created,
            views_dropped,
            views_created,
            key_changed,
            functions_recreated,
        }
    }

    fn rel_dropped(&self, key: &str) -> bool {
        self.tables_dropped.contains(key) || self.views_dropped.contains(key)
    }

    fn rel_created(&self, key: &str) -> bool {
        self.tables_created.contains(key) || self.views_created.contains(key)
    }

    fn was_created(&self, kind: ObjectKind, key: &str) -> bool {
        self.created.contains(&(family(kind), key.to_string()))
    }

    fn push(&mut self, op: Operation, kind: ObjectKind, identity: &str, sql: String) -> &mut Statement {
        match op {
            Operation::Create => {
                self.created.insert((family(kind), identity.to_string()));
            }
            Operation::Drop => {
                self.dropped.insert((family(kind), identity.to_string()));
            }
            _ => {}
        }
        self.out.push(Statement {
            sql,
            kind,
            identity: identity.to_string(),
            operation: op,
            drops_data: false,
            drops: None,
            recreates: None,
            note: None,
        });
        self.out.last_mut().expect("just pushed")
    }

    fn comment_line(op: Operation, text: &str) -> String {
        let prefix = if op == Operation::CannotRevert { "cannot revert: " } else { "" };
        format!("-- {prefix}{}", text.replace(['\n', '\r'], " "))
    }

    fn note(&mut self, op: Operation, kind: ObjectKind, identity: &str, text: &str) {
        let sql = Self::comment_line(op, text);
        self.push(op, kind, identity, sql).note = Some(text.to_string());
    }

    // ---- step 1 -------------------------------------------------------------

    fn drop_dependents(&mut self) {
        let (live, target) = (self.live, self.target);
        for (k, l) in &live.policies {
            if !self.rel_dropped(&l.table) && target.policies.get(k).is_none_or(|t| core(l, &[]) != core(t, &[])) {
                let sql = format!("DROP POLICY {} ON {}", quote_ident(&l.name), ddl_name(&l.table));
                self.push(Operation::Drop, ObjectKind::Policy, k, sql);
            }
        }
        for (k, l) in &live.triggers {
            if !l.inherited
                && !self.rel_dropped(&l.table)
                && target.triggers.get(k).is_none_or(|t| core(l, &["enabled"]) != core(t, &["enabled"]))
            {
                let sql = format!("DROP TRIGGER {} ON {}", quote_ident(&l.name), ddl_name(&l.table));
                self.push(Operation::Drop, ObjectKind::Trigger, k, sql);
            }
        }
        let order = topo(&self.views_dropped, &|k| live.views[k].depends_on.clone());
        for k in order.iter().rev() {
            let v = &live.views[k];
            let kind = ObjectKind::of_view(v);
            let what = if v.materialized { "MATERIALIZED VIEW" } else { "VIEW" };
            let sql = format!("DROP {what} {}", qualified(&[&v.schema, &v.name]));
            let back = target.views.contains_key(k);
            let st = self.push(Operation::Drop, kind, k, sql);
            st.drops_data = v.materialized && v.has_data != Some(false);
            if back {
                st.note = Some("dropped to be re-created from the snapshot".into());
            }
        }
        // Foreign keys first: they block drops of the keys and tables they use.
        for fk_pass in [true, false] {
            for (k, l) in &live.constraints {
                if (l.kind == ConstraintKind::ForeignKey) != fk_pass || !l.local {
                    continue;
                }
                let t = target.constraints.get(k);
                let changed = t.is_none_or(|t| constraint_plan(l, t) == ConPlan::Recreate);
                let drop = if fk_pass {
                    let refs_dropped = l.references.as_ref().is_some_and(|r| self.tables_dropped.contains(r));
                    let refs_changed = t.is_some_and(|t| t.references.as_ref().is_some_and(|r| self.key_changed.contains(r)));
                    refs_dropped || (!self.rel_dropped(&l.table) && (changed || refs_changed))
                } else {
                    !self.rel_dropped(&l.table) && changed
                };
                if drop {
                    let sql = format!("ALTER TABLE {} DROP CONSTRAINT {}", ddl_name(&l.table), quote_ident(&l.name));
                    self.push(Operation::Drop, ObjectKind::Constraint, k, sql);
                }
            }
        }
        for (k, l) in &live.indexes {
            if !l.constraint
                && !l.inherited
                && !self.rel_dropped(&l.table)
                && target.indexes.get(k).is_none_or(|t| index_changed(l, t))
            {
                let sql = format!("DROP INDEX {}", qualified(&[&l.schema, &l.name]));
                self.push(Operation::Drop, ObjectKind::Index, k, sql);
            }
        }
        for k in self.functions_recreated.clone() {
            let f = &live.functions[&k];
            let sql = format!("DROP {} {}({})", f.sql_kind(), qualified(&[&f.schema, &f.name]), f.arguments);
            self.push(Operation::Drop, ObjectKind::of_function(f), &k, sql).note =
                Some("its result type or kind changes: dropped and re-created".into());
        }
    }

    // ---- step 2 -------------------------------------------------------------

    fn create_bases(&mut self) {
        let (live, target) = (self.live, self.target);
        for (k, t) in &target.schemas {
            if !live.schemas.contains_key(k) {
                self.push(Operation::Create, ObjectKind::Schema, k, format!("CREATE SCHEMA {}", quote_ident(&t.name)));
            }
        }
        for (k, t) in &target.enums {
            let name = qualified(&[&t.schema, &t.name]);
            match live.enums.get(k) {
                None => {
                    let labels: Vec<String> = t.labels.iter().map(|l| quote_literal(l)).collect();
                    let sql = format!("CREATE TYPE {name} AS ENUM ({})", labels.join(", "));
                    self.push(Operation::Create, ObjectKind::Enum, k, sql);
                }
                Some(l) => self.enum_labels(k, &name, l, t),
            }
        }
        for (k, t) in &target.domains {
            match live.domains.get(k) {
                None => self.create_domain(k, t),
                Some(l) => self.alter_domain(k, l, t),
            }
        }
        for (k, t) in &target.sequences {
            let opts = format!(
                "AS {} INCREMENT BY {} MINVALUE {} MAXVALUE {} START WITH {} CACHE {} {}",
                t.data_type,
                t.increment,
                t.min,
                t.max,
                t.start,
                t.cache,
                if t.cycle { "CYCLE" } else { "NO CYCLE" }
            );
            let name = qualified(&[&t.schema, &t.name]);
            match live.sequences.get(k) {
                None => {
                    self.push(Operation::Create, ObjectKind::Sequence, k, format!("CREATE SEQUENCE {name} {opts}"));
                }
                Some(l) => {
                    let strip = [SEQUENCE_STRIP, &["owned_by"]].concat();
                    if core(l, &strip) != core(t, &strip) {
                        self.push(Operation::Alter, ObjectKind::Sequence, k, format!("ALTER SEQUENCE {name} {opts}"));
                    }
                }
            }
        }
        let functions: Vec<(&String, &Function)> = target
            .functions
            .iter()
            .filter(|(k, t)| {
                self.functions_recreated.contains(*k) || live.functions.get(*k).is_none_or(|l| core(l, &[]) != core(*t, &[]))
            })
            .collect();
        if !functions.is_empty() {
            self.push(
                Operation::Setting,
                ObjectKind::Function,
                "",
                "SET LOCAL check_function_bodies = off".into(),
            )
            .note = Some("function bodies may name tables created further down".into());
        }
        for (k, t) in functions {
            let op = if live.functions.contains_key(k) && !self.functions_recreated.contains(k) {
                Operation::Alter
            } else {
                Operation::Create
            };
            let sql = t.definition.trim_end().trim_end_matches(';').to_string();
            self.push(op, ObjectKind::of_function(t), k, sql);
        }
    }

    fn enum_labels(&mut self, key: &str, name: &str, l: &EnumType, t: &EnumType) {
        let extra: Vec<&String> = l.labels.iter().filter(|x| !t.labels.contains(x)).collect();
        if !extra.is_empty() {
            let list: Vec<String> = extra.iter().map(|x| quote_literal(x)).collect();
            self.note(
                Operation::CannotRevert,
                ObjectKind::Enum,
                key,
                &format!("enum {name} has labels the snapshot does not ({}); PostgreSQL cannot remove enum labels", list.join(", ")),
            );
        }
        let common_l: Vec<&String> = l.labels.iter().filter(|x| t.labels.contains(x)).collect();
        let common_t: Vec<&String> = t.labels.iter().filter(|x| l.labels.contains(x)).collect();
        if common_l != common_t {
            self.note(
                Operation::CannotRevert,
                ObjectKind::Enum,
                key,
                &format!("the labels of enum {name} are in a different order than in the snapshot; PostgreSQL cannot reorder enum labels"),
            );
        }
        let mut current: Vec<String> = l.labels.clone();
        for (i, label) in t.labels.iter().enumerate() {
            if current.contains(label) {
                continue;
            }
            let before = t.labels[i + 1..].iter().find(|x| current.contains(x));
            let after = t.labels[..i].iter().rev().find(|x| current.contains(x));
            let (clause, pos) = match (before, after) {
                (Some(b), _) => (format!(" BEFORE {}", quote_literal(b)), current.iter().position(|x| x == b).unwrap_or(0)),
                (None, Some(a)) => (format!(" AFTER {}", quote_literal(a)), current.iter().position(|x| x == a).map_or(current.len(), |p| p + 1)),
                (None, None) => (String::new(), current.len()),
            };
            current.insert(pos, label.clone());
            let sql = format!("ALTER TYPE {name} ADD VALUE {}{clause}", quote_literal(label));
            self.push(Operation::Alter, ObjectKind::Enum, key, sql).note =
                Some("a label added back cannot be used before the transaction commits".into());
        }
    }

    fn domain_check_sql(name: &str, c: &DomainCheck) -> String {
        format!("ALTER DOMAIN {name} ADD CONSTRAINT {} {}", quote_ident(&c.name), c.definition)
    }

    fn create_domain(&mut self, key: &str, t: &Domain) {
        let name = qualified(&[&t.schema, &t.name]);
        let mut sql = format!("CREATE DOMAIN {name} AS {}", t.base_type);
        if let Some(c) = &t.collation {
            sql += &format!(" COLLATE {c}");
        }
        if let Some(d) = &t.default {
            sql += &format!(" DEFAULT {d}");
        }
        if t.not_null {
            sql += " NOT NULL";
        }
        self.push(Operation::Create, ObjectKind::Domain, key, sql);
        for c in t.checks.values() {
            self.push(Operation::Alter, ObjectKind::Domain, key, Self::domain_check_sql(&name, c));
        }
    }

    fn alter_domain(&mut self, key: &str, l: &Domain, t: &Domain) {
        let name = qualified(&[&t.schema, &t.name]);
        if l.base_type != t.base_type || l.collation != t.collation {
            self.note(
                Operation::CannotRevert,
                ObjectKind::Domain,
                key,
                &format!("domain {name} has base type {} {:?}, the snapshot {} {:?}; a domain's type cannot be altered", l.base_type, l.collation, t.base_type, t.collation),
            );
        }
        if l.default != t.default {
            let sql = match &t.default {
                Some(d) => format!("ALTER DOMAIN {name} SET DEFAULT {d}"),
                None => format!("ALTER DOMAIN {name} DROP DEFAULT"),
            };
            self.push(Operation::Alter, ObjectKind::Domain, key, sql);
        }
        if l.not_null != t.not_null {
            let what = if t.not_null { "SET" } else { "DROP" };
            self.push(Operation::Alter, ObjectKind::Domain, key, format!("ALTER DOMAIN {name} {what} NOT NULL"));
        }
        let mut add = Vec::new();
        for (n, lc) in &l.checks {
            let plan = t.checks.get(n).map(|tc| con_plan(&lc.definition, lc.validated, &tc.definition, tc.validated, true));
            match plan {
                None | Some(ConPlan::Recreate) => {
                    let sql = format!("ALTER DOMAIN {name} DROP CONSTRAINT {}", quote_ident(n));
                    self.push(Operation::Alter, ObjectKind::Domain, key, sql);
                    if let Some(tc) = t.checks.get(n) {
                        add.push(tc);
                    }
                }
                Some(ConPlan::Validate) => {
                    let sql = format!("ALTER DOMAIN {name} VALIDATE CONSTRAINT {}", quote_ident(n));
                    self.push(Operation::Alter, ObjectKind::Domain, key, sql);
                }
                Some(ConPlan::KeepValidated) => self.note(
                    Operation::Note,
                    ObjectKind::Domain,
                    key,
                    &format!("constraint {} of domain {name} stays validated (it was NOT VALID in the snapshot)", quote_ident(n)),
                ),
                Some(ConPlan::Same) => {}
            }
        }
        add.extend(t.checks.iter().filter(|(n, _)| !l.checks.contains_key(*n)).map(|(_, c)| c));
        for c in add {
            self.push(Operation::Alter, ObjectKind::Domain, key, Self::domain_check_sql(&name, c));
        }
    }

    // ---- step 3 -------------------------------------------------------------

    fn column_sql(c: &Column) -> String {
        let mut s = format!("{} {}", quote_ident(&c.name), c.type_name);
        if let Some(coll) = &c.collation {
            s += &format!(" COLLATE {coll}");
        }
        if let Some(g) = &c.generated {
            s += &format!(" GENERATED ALWAYS AS ({g}) STORED");
        } else if let Some(d) = &c.default {
            s += &format!(" DEFAULT {d}");
        }
        if let Some(i) = c.identity {
            s += &format!(" GENERATED {} AS IDENTITY", i.sql());
        }
        if c.not_null {
            s += " NOT NULL";
        }
        s
    }

    fn create_table_sql(t: &Table) -> String {
        let name = qualified(&[&t.schema, &t.name]);
        let unlogged = if t.persistence == Persistence::Unlogged { "UNLOGGED " } else { "" };
        let part_by = t.partition_key.as_ref().map(|k| format!(" PARTITION BY {k}")).unwrap_or_default();
        if let (Some(bound), Some(parent)) = (&t.partition_bound, t.inherits.first()) {
            return format!("CREATE {unlogged}TABLE {name} PARTITION OF {} {bound}{part_by}", ddl_name(parent));
        }
        let cols: Vec<String> = t
            .column_order()
            .iter()
            .map(|n| &t.columns[n])
            .filter(|c| c.local)
            .map(Self::column_sql)
            .collect();
        let inherits = if t.inherits.is_empty() {
            String::new()
        } else {
            let parents: Vec<String> = t.inherits.iter().map(|p| ddl_name(p)).collect();
            format!(" INHERITS ({})", parents.join(", "))
        };
        format!("CREATE {unlogged}TABLE {name} ({}){inherits}{part_by}", cols.join(", "))
    }

    fn tables(&mut self) {
        let (live, target) = (self.live, self.target);
        // Detach and disinherit first: a parent may be dropped next.
        for (k, l) in &live.tables {
            let Some(t) = target.tables.get(k) else { continue };
            let name = qualified(&[&l.schema, &l.name]);
            if l.partition_bound.is_some() {
                if t.partition_bound != l.partition_bound || t.inherits.first() != l.inherits.first() {
                    if let Some(parent) = l.inherits.first() {
                        let sql = format!("ALTER TABLE {} DETACH PARTITION {name}", ddl_name(parent));
                        self.push(Operation::Alter, ObjectKind::Table, k, sql);
                    }
                }
            } else {
                for p in l.inherits.iter().filter(|p| !t.inherits.contains(p)) {
                    self.push(Operation::Alter, ObjectKind::Table, k, format!("ALTER TABLE {name} NO INHERIT {}", ddl_name(p)));
                }
            }
        }
        let order = topo(&self.tables_dropped, &|k| live.tables[k].inherits.clone());
        for k in order.iter().rev() {
            let l = &live.tables[k];
            let st = self.push(Operation::Drop, ObjectKind::Table, k, format!("DROP TABLE {}", qualified(&[&l.schema, &l.name])));
            st.drops_data = l.may_have_data();
            st.drops = Some(DataObject::Table { table: k.clone() });
        }
        let order = topo(&self.tables_created, &|k| target.tables[k].inherits.clone());
        for k in &order {
            let t = &target.tables[k];
            let st = self.push(Operation::Create, ObjectKind::Table, k, Self::create_table_sql(t));
            st.recreates = Some(DataObject::Table { table: k.clone() });
            if t.rls_enabled {
                let sql = format!("ALTER TABLE {} ENABLE ROW LEVEL SECURITY", qualified(&[&t.schema, &t.name]));
                self.push(Operation::Alter, ObjectKind::Table, k, sql);
            }
            if t.rls_forced {
                let sql = format!("ALTER TABLE {} FORCE ROW LEVEL SECURITY", qualified(&[&t.schema, &t.name]));
                self.push(Operation::Alter, ObjectKind::Table, k, sql);
            }
            for c in t.columns.values() {
                self.created.insert((ObjectKind::Column, t.column_key(&c.name)));
            }
        }
        for (k, l) in &live.tables {
            if let Some(t) = target.tables.get(k) {
                self.alter_table(k, l, t);
            }
        }
    }

    fn alter_table(&mut self, key: &str, l: &Table, t: &Table) {
        let name = qualified(&[&t.schema, &t.name]);
        let alter = |rest: String| format!("ALTER TABLE {name} {rest}");
        if l.persistence != t.persistence {
            let what = if t.persistence == Persistence::Unlogged { "SET UNLOGGED" } else { "SET LOGGED" };
            self.push(Operation::Alter, ObjectKind::Table, key, alter(what.into()));
        }
        if l.partition_key != t.partition_key {
            self.note(
                Operation::CannotRevert,
                ObjectKind::Table,
                key,
                &format!("the partitioning of {name} differs from the snapshot ({:?} vs {:?}); it can only be changed by re-creating the table", l.partition_key, t.partition_key),
            );
        }
        for lc in l.columns.values() {
            if lc.local && !t.columns.contains_key(&lc.name) {
                let st = self.push(Operation::Drop, ObjectKind::Column, &t.column_key(&lc.name), alter(format!("DROP COLUMN {}", quote_ident(&lc.name))));
                st.drops_data = l.may_have_data();
                st.drops = Some(DataObject::Column { table: key.to_string(), column: lc.name.clone() });
            }
        }
        for n in t.column_order() {
            let tc = &t.columns[&n];
            if tc.local && !l.columns.contains_key(&n) {
                let ck = t.column_key(&n);
                let st = self.push(Operation::Create, ObjectKind::Column, &ck, alter(format!("ADD COLUMN {}", Self::column_sql(tc))));
                st.recreates = Some(DataObject::Column { table: key.to_string(), column: n.clone() });
                st.note = Some("the column comes back at the end of the table".into());
            }
        }
        for lc in l.columns.values() {
            if let Some(tc) = t.columns.get(&lc.name) {
                if core(lc, COLUMN_STRIP) != core(tc, COLUMN_STRIP) {
                    self.alter_column(&name, l, lc, tc);
                }
            }
        }
        if l.rls_enabled != t.rls_enabled {
            let what = if t.rls_enabled { "ENABLE" } else { "DISABLE" };
            self.push(Operation::Alter, ObjectKind::Table, key, alter(format!("{what} ROW LEVEL SECURITY")));
        }
        if l.rls_forced != t.rls_forced {
            let what = if t.rls_forced { "FORCE" } else { "NO FORCE" };
            self.push(Operation::Alter, ObjectKind::Table, key, alter(format!("{what} ROW LEVEL SECURITY")));
        }
        if t.partition_bound.is_some() {
            if t.partition_bound != l.partition_bound || t.inherits.first() != l.inherits.first() {
                if let (Some(parent), Some(bound)) = (t.inherits.first(), &t.partition_bound) {
                    let sql = format!("ALTER TABLE {} ATTACH PARTITION {name} {bound}", ddl_name(parent));
                    self.push(Operation::Alter, ObjectKind::Table, key, sql);
                }
            }
        } else {
            for p in t.inherits.iter().filter(|p| !l.inherits.contains(p)) {
                self.push(Operation::Alter, ObjectKind::Table, key, alter(format!("INHERIT {}", ddl_name(p))));
            }
        }
        // The order the table will have: kept columns as they are, re-added ones last.
        let mut will: Vec<String> = l.column_order().into_iter().filter(|c| t.columns.contains_key(c)).collect();
        will.extend(t.column_order().into_iter().filter(|c| !l.columns.contains_key(c)));
        let want = t.column_order();
        if will != want {
            let list = |v: &[String]| v.iter().map(|c| quote_ident(c)).collect::<Vec<_>>().join(", ");
            self.note(
                Operation::Note,
                ObjectKind::ColumnOrder,
                key,
                &format!("the columns of {name} will be in the order ({}), the snapshot has ({}): PostgreSQL cannot reorder columns; the diff reports this as a column order change", list(&will), list(&want)),
            );
        }
    }

    fn alter_column(&mut self, table: &str, l: &Table, lc: &Column, tc: &Column) {
        let ck = l.column_key(&lc.name);
        let col = quote_ident(&lc.name);
        let alter = |rest: String| format!("ALTER TABLE {table} ALTER COLUMN {col} {rest}");
        if lc.identity.is_some() && tc.identity.is_none() {
            self.push(Operation::Alter, ObjectKind::Column, &ck, alter("DROP IDENTITY".into()));
        }
        if lc.default != tc.default && tc.default.is_none() && lc.generated.is_none() {
            self.push(Operation::Alter, ObjectKind::Column, &ck, alter("DROP DEFAULT".into()));
        }
        if lc.generated != tc.generated {
            if tc.generated.is_none() {
                self.push(Operation::Alter, ObjectKind::Column, &ck, alter("DROP EXPRESSION".into()));
            } else {
                self.note(
                    Operation::CannotRevert,
                    ObjectKind::Column,
                    &ck,
                    &format!("column {col} of {table} was generated as ({}) in the snapshot and is {}; PostgreSQL 15 cannot change a generation expression in place", tc.generated.as_deref().unwrap_or(""), lc.generated.as_deref().map_or("a plain column".to_string(), |g| format!("generated as ({g})"))),
                );
            }
        }
        if (lc.type_name != tc.type_name || lc.collation != tc.collation) && tc.local {
            let collate = match (&lc.collation, &tc.collation) {
                (a, b) if a == b => String::new(),
                (_, Some(c)) => format!(" COLLATE {c}"),
                (_, None) => " COLLATE \"default\"".into(),
            };
            let using = if lc.type_name != tc.type_name { format!(" USING {col}::{}", tc.type_name) } else { String::new() };
            let st = self.push(Operation::Alter, ObjectKind::Column, &ck, alter(format!("TYPE {}{collate}{using}", tc.type_name)));
            st.drops_data = l.may_have_data() && type_change_is_lossy(lc, tc);
        } else if lc.type_name != tc.type_name {
            self.note(
                Operation::Note,
                ObjectKind::Column,
                &ck,
                &format!("column {col} of {table} is inherited: its type follows its parent's"),
            );
        }
        if lc.default != tc.default {
            if let Some(d) = &tc.default {
                self.push(Operation::Alter, ObjectKind::Column, &ck, alter(format!("SET DEFAULT {d}")));
            }
        }
        if lc.not_null != tc.not_null {
            let what = if tc.not_null { "SET NOT NULL" } else { "DROP NOT NULL" };
            self.push(Operation::Alter, ObjectKind::Column, &ck, alter(what.into()));
        }
        match (lc.identity, tc.identity) {
            (None, Some(k)) => {
                self.push(Operation::Alter, ObjectKind::Column, &ck, alter(format!("ADD GENERATED {} AS IDENTITY", k.sql())));
            }
            (Some(a), Some(b)) if a != b => {
                self.push(Operation::Alter, ObjectKind::Column, &ck, alter(format!("SET GENERATED {}", b.sql())));
            }
            _ => {}
        }
    }

    // ---- step 4 -------------------------------------------------------------

    /// The column with this identity key disappears in step 3.
    fn column_dropped(&self, column_key: &str) -> bool {
        let Ok(parts) = parse_identity(column_key) else { return false };
        if parts.len() != 3 {
            return false;
        }
        let table = super::quote::identity(&[&parts[0], &parts[1]]);
        if self.tables_dropped.contains(&table) {
            return true;
        }
        match (self.live.tables.get(&table), self.target.tables.get(&table)) {
            (Some(l), Some(t)) => l.columns.contains_key(&parts[2]) && !t.columns.contains_key(&parts[2]),
            _ => false,
        }
    }

    fn drop_bases(&mut self) {
        let (live, target) = (self.live, self.target);
        for (k, l) in &live.sequences {
            if !target.sequences.contains_key(k) && !l.owned_by.as_ref().is_some_and(|c| self.column_dropped(c)) {
                let st = self.push(Operation::Drop, ObjectKind::Sequence, k, format!("DROP SEQUENCE {}", qualified(&[&l.schema, &l.name])));
                st.drops_data = true;
            }
        }
        for (k, l) in &live.functions {
            if !target.functions.contains_key(k) {
                let sql = format!("DROP {} {}({})", l.sql_kind(), qualified(&[&l.schema, &l.name]), l.arguments);
                self.push(Operation::Drop, ObjectKind::of_function(l), k, sql);
            }
        }
        for (k, l) in &live.domains {
            if !target.domains.contains_key(k) {
                self.push(Operation::Drop, ObjectKind::Domain, k, format!("DROP DOMAIN {}", qualified(&[&l.schema, &l.name])));
            }
        }
        for (k, l) in &live.enums {
            if !target.enums.contains_key(k) {
                self.push(Operation::Drop, ObjectKind::Enum, k, format!("DROP TYPE {}", qualified(&[&l.schema, &l.name])));
            }
        }
        for (k, l) in &live.schemas {
            if !target.schemas.contains_key(k) {
                self.push(Operation::Drop, ObjectKind::Schema, k, format!("DROP SCHEMA {}", quote_ident(&l.name)));
            }
        }
    }

    // ---- step 5 -------------------------------------------------------------

    /// Whether a dependent present in `target` must be created: missing live,
    /// dropped in step 1, or its relation is (re-)created.
    fn needs_create(&self, kind: ObjectKind, key: &str, table: &str, in_live: bool) -> bool {
        !in_live || self.dropped.contains(&(kind, key.to_string())) || self.rel_created(table)
    }

    fn create_indexes(&mut self, on_views: bool) {
        let (live, target) = (self.live, self.target);
        for (k, t) in &target.indexes {
            if t.constraint || t.inherited || target.views.contains_key(&t.table) != on_views {
                continue;
            }
            let l = live.indexes.get(k);
            if self.needs_create(ObjectKind::Index, k, &t.table, l.is_some()) {
                self.push(Operation::Create, ObjectKind::Index, k, t.definition.trim_end().trim_end_matches(';').to_string());
            } else if l.is_some_and(|l| l.valid && !t.valid) {
                self.note(Operation::Note, ObjectKind::Index, k, &format!("index {} stays valid (it was invalid in the snapshot)", qualified(&[&t.schema, &t.name])));
            }
        }
    }

    fn create_dependents(&mut self) {
        let (live, target) = (self.live, self.target);
        for (k, t) in &target.sequences {
            let live_owner = if self.was_created(ObjectKind::Sequence, k) {
                None
            } else {
                live.sequences
                    .get(k)
                    .and_then(|l| l.owned_by.clone())
                    .filter(|c| !self.column_dropped(c))
            };
            if t.owned_by != live_owner {
                let owner = t.owned_by.as_deref().map_or("NONE".to_string(), ddl_name);
                let sql = format!("ALTER SEQUENCE {} OWNED BY {owner}", qualified(&[&t.schema, &t.name]));
                self.push(Operation::Alter, ObjectKind::Sequence, k, sql);
            }
        }
        self.create_indexes(false);
        for fk_pass in [false, true] {
            for (k, t) in &target.constraints {
                if (t.kind == ConstraintKind::ForeignKey) != fk_pass || !t.local {
                    continue;
                }
                let l = live.constraints.get(k);
                let table = ddl_name(&t.table);
                if self.needs_create(ObjectKind::Constraint, k, &t.table, l.is_some()) {
                    let sql = format!("ALTER TABLE {table} ADD CONSTRAINT {} {}", quote_ident(&t.name), t.definition);
                    self.push(Operation::Create, ObjectKind::Constraint, k, sql);
                } else if let Some(l) = l {
                    match constraint_plan(l, t) {
                        ConPlan::Validate => {
                            let sql = format!("ALTER TABLE {table} VALIDATE CONSTRAINT {}", quote_ident(&t.name));
                            self.push(Operation::Alter, ObjectKind::Constraint, k, sql);
                        }
                        ConPlan::KeepValidated => self.note(
                            Operation::Note,
                            ObjectKind::Constraint,
                            k,
                            &format!("constraint {} on {table} stays validated (it was NOT VALID in the snapshot)", quote_ident(&t.name)),
                        ),
                        _ => {}
                    }
                }
            }
        }
        let views = self.views_created.clone();
        for k in topo(&views, &|k| target.views[k].depends_on.clone()) {
            let v = &target.views[&k];
            let name = qualified(&[&v.schema, &v.name]);
            let sql = if v.materialized {
                let data = if v.has_data == Some(false) { "WITH NO DATA" } else { "WITH DATA" };
                format!("CREATE MATERIALIZED VIEW {name} AS {} {data}", view_body(&v.definition))
            } else {
                format!("CREATE VIEW {name} AS {}", view_body(&v.definition))
            };
            self.push(Operation::Create, ObjectKind::of_view(v), &k, sql);
        }
        self.create_indexes(true);
        for (k, t) in &target.triggers {
            if t.inherited {
                continue;
            }
            let l = live.triggers.get(k);
            let created = self.needs_create(ObjectKind::Trigger, k, &t.table, l.is_some());
            if created {
                self.push(Operation::Create, ObjectKind::Trigger, k, t.definition.trim_end().trim_end_matches(';').to_string());
            }
            let current = if created { "O" } else { l.map_or("O", |l| l.enabled.as_str()) };
            if current != t.enabled {
                let what = match t.enabled.as_str() {
                    "D" => "DISABLE",
                    "R" => "ENABLE REPLICA",
                    "A" => "ENABLE ALWAYS",
                    _ => "ENABLE",
                };
                let sql = format!("ALTER TABLE {} {what} TRIGGER {}", ddl_name(&t.table), quote_ident(&t.name));
                self.push(Operation::Alter, ObjectKind::Trigger, k, sql);
            }
        }
        for (k, t) in &target.policies {
            if self.needs_create(ObjectKind::Policy, k, &t.table, live.policies.contains_key(k)) {
                let mut sql = format!(
                    "CREATE POLICY {} ON {} AS {} FOR {}",
                    quote_ident(&t.name),
                    ddl_name(&t.table),
                    if t.permissive { "PERMISSIVE" } else { "RESTRICTIVE" },
                    t.command
                );
                if !t.roles.is_empty() {
                    let roles: Vec<String> = t
                        .roles
                        .iter()
                        .map(|r| if r == "public" { "PUBLIC".to_string() } else { quote_ident(r) })
                        .collect();
                    sql += &format!(" TO {}", roles.join(", "));
                }
                if let Some(u) = &t.using {
                    sql += &format!(" USING ({u})");
                }
                if let Some(c) = &t.with_check {
                    sql += &format!(" WITH CHECK ({c})");
                }
                self.push(Operation::Create, ObjectKind::Policy, k, sql);
            }
        }
        for (k, t) in &target.sequences {
            if let (true, Some(v)) = (self.was_created(ObjectKind::Sequence, k), t.last_value) {
                let sql = format!("SELECT pg_catalog.setval({}, {v}, true)", quote_literal(&qualified(&[&t.schema, &t.name])));
                self.push(Operation::Alter, ObjectKind::Sequence, k, sql).note =
                    Some("the sequence continues where it stood at the snapshot".into());
            }
        }
    }

    // ---- comments and privileges ---------------------------------------------

    fn comment(&mut self, kind: ObjectKind, key: &str, object: String, live: Option<&str>, target: Option<&str>) {
        let live = if self.was_created(kind, key) { None } else { live };
        if live != target {
            let sql = format!("COMMENT ON {object} IS {}", target.map_or("NULL".to_string(), quote_literal));
            self.push(Operation::Comment, ObjectKind::Comment, &format!("{kind} {key}"), sql);
        }
    }

    fn comments(&mut self) {
        let (live, target) = (self.live, self.target);
        for (k, t) in &target.schemas {
            let l = live.schemas.get(k).and_then(|l| l.comment.as_deref());
            self.comment(ObjectKind::Schema, k, format!("SCHEMA {}", quote_ident(&t.name)), l, t.comment.as_deref());
        }
        for (k, t) in &target.enums {
            let l = live.enums.get(k).and_then(|l| l.comment.as_deref());
            self.comment(ObjectKind::Enum, k, format!("TYPE {}", qualified(&[&t.schema, &t.name])), l, t.comment.as_deref());
        }
        for (k, t) in &target.domains {
            let l = live.domains.get(k).and_then(|l| l.comment.as_deref());
            self.comment(ObjectKind::Domain, k, format!("DOMAIN {}", qualified(&[&t.schema, &t.name])), l, t.comment.as_deref());
        }
        for (k, t) in &target.sequences {
            let l = live.sequences.get(k).and_then(|l| l.comment.as_deref());
            self.comment(ObjectKind::Sequence, k, format!("SEQUENCE {}", qualified(&[&t.schema, &t.name])), l, t.comment.as_deref());
        }
        for (k, t) in &target.functions {
            let l = live.functions.get(k).and_then(|l| l.comment.as_deref());
            let obj = format!("{} {}({})", t.sql_kind(), qualified(&[&t.schema, &t.name]), t.arguments);
            self.comment(ObjectKind::of_function(t), k, obj, l, t.comment.as_deref());
        }
        for (k, t) in &target.tables {
            let lt = live.tables.get(k);
            let name = qualified(&[&t.schema, &t.name]);
            self.comment(ObjectKind::Table, k, format!("TABLE {name}"), lt.and_then(|l| l.comment.as_deref()), t.comment.as_deref());
            for n in t.column_order() {
                let c = &t.columns[&n];
                let l = if self.was_created(ObjectKind::Table, k) { None } else { lt.and_then(|l| l.columns.get(&n)).and_then(|l| l.comment.as_deref()) };
                let obj = format!("COLUMN {name}.{}", quote_ident(&n));
                self.comment(ObjectKind::Column, &t.column_key(&n), obj, l, c.comment.as_deref());
            }
        }
        for (k, t) in &target.constraints {
            let l = live.constraints.get(k).and_then(|l| l.comment.as_deref());
            let obj = format!("CONSTRAINT {} ON {}", quote_ident(&t.name), ddl_name(&t.table));
            self.comment(ObjectKind::Constraint, k, obj, l, t.comment.as_deref());
        }
        for (k, t) in &target.indexes {
            // A constraint's index is re-created with its constraint or relation.
            let owner = format!("{} on {}", super::quote::identity(&[&t.name]), t.table);
            let recreated = t.constraint && (self.rel_created(&t.table) || self.was_created(ObjectKind::Constraint, &owner));
            let l = if recreated { None } else { live.indexes.get(k).and_then(|l| l.comment.as_deref()) };
            self.comment(ObjectKind::Index, k, format!("INDEX {}", qualified(&[&t.schema, &t.name])), l, t.comment.as_deref());
        }
        for (k, t) in &target.views {
            let l = live.views.get(k).and_then(|l| l.comment.as_deref());
            let what = if t.materialized { "MATERIALIZED VIEW" } else { "VIEW" };
            self.comment(ObjectKind::of_view(t), k, format!("{what} {}", qualified(&[&t.schema, &t.name])), l, t.comment.as_deref());
        }
        for (k, t) in &target.triggers {
            let l = live.triggers.get(k).and_then(|l| l.comment.as_deref());
            let obj = format!("TRIGGER {} ON {}", quote_ident(&t.name), ddl_name(&t.table));
            self.comment(ObjectKind::Trigger, k, obj, l, t.comment.as_deref());
        }
        for (k, t) in &target.policies {
            let l = live.policies.get(k).and_then(|l| l.comment.as_deref());
            let obj = format!("POLICY {} ON {}", quote_ident(&t.name), ddl_name(&t.table));
            self.comment(ObjectKind::Policy, k, obj, l, t.comment.as_deref());
        }
    }

    /// Reverts one object's ACL. `on` is the GRANT target (`TABLE public.t`);
    /// `column` restricts table privileges to one column; `default_public` is the
    /// privilege PUBLIC holds on a freshly created object of this kind.
    #[allow(clippy::too_many_arguments)]
    fn acl(&mut self, kind: ObjectKind, key: &str, on: &str, column: Option<&str>, live: Option<&[String]>, target: &[String], default_public: Option<char>) {
        let id = format!("{kind} {key}");
        let created = self.was_created(kind, key) || live.is_none();
        let live_map = if created {
            Ok(default_public.map(|p| AclMap::from([(String::new(), BTreeMap::from([(p, false)]))])).unwrap_or_default())
        } else {
            acl_map(live.unwrap_or_default())
        };
        let (lm, tm) = match (live_map, acl_map(target)) {
            (Ok(l), Ok(t)) => (l, t),
            (Err(bad), _) | (_, Err(bad)) => {
                self.note(Operation::CannotRevert, ObjectKind::Privileges, &id, &format!("ACL item {bad:?} of {on} cannot be parsed; its privileges are not reverted"));
                return;
            }
        };
        if lm == tm {
            return;
        }
        let empty = BTreeMap::new();
        let grantees: BTreeSet<&String> = lm.keys().chain(tm.keys()).collect();
        for g in grantees {
            let (l, t) = (lm.get(g).unwrap_or(&empty), tm.get(g).unwrap_or(&empty));
            let names = |cs: Vec<char>| -> Option<String> {
                if cs.is_empty() {
                    return None;
                }
                let v: Vec<String> = cs
                    .iter()
                    .map(|c| {
                        let p = privilege_name(*c).unwrap_or("ALL");
                        column.map_or(p.to_string(), |col| format!("{p} ({})", quote_ident(col)))
                    })
                    .collect();
                Some(v.join(", "))
            };
            let who = grantee_sql(g);
            let revoke = names(l.keys().filter(|c| !t.contains_key(c)).copied().collect());
            let revoke_go = names(l.iter().filter(|(c, go)| **go && t.get(c) == Some(&false)).map(|(c, _)| *c).collect());
            let grant = names(t.iter().filter(|(c, go)| !**go && !l.contains_key(c)).map(|(c, _)| *c).collect());
            let grant_go = names(t.iter().filter(|(c, go)| **go && l.get(c) != Some(&true)).map(|(c, _)| *c).collect());
            if let Some(p) = revoke {
                self.push(Operation::Revoke, ObjectKind::Privileges, &id, format!("REVOKE {p} ON {on} FROM {who}"));
            }
            if let Some(p) = revoke_go {
                self.push(Operation::Revoke, ObjectKind::Privileges, &id, format!("REVOKE GRANT OPTION FOR {p} ON {on} FROM {who}"));
            }
            if let Some(p) = grant {
                self.push(Operation::Grant, ObjectKind::Privileges, &id, format!("GRANT {p} ON {on} TO {who}"));
            }
            if let Some(p) = grant_go {
                self.push(Operation::Grant, ObjectKind::Privileges, &id, format!("GRANT {p} ON {on} TO {who} WITH GRANT OPTION"));
            }
        }
    }

    fn privileges(&mut self) {
        let (live, target) = (self.live, self.target);
        for (k, t) in &target.schemas {
            self.acl(ObjectKind::Schema, k, &format!("SCHEMA {}", quote_ident(&t.name)), None, live.schemas.get(k).map(|l| l.acl.as_slice()), &t.acl, None);
        }
        for (k, t) in &target.enums {
            self.acl(ObjectKind::Enum, k, &format!("TYPE {}", qualified(&[&t.schema, &t.name])), None, live.enums.get(k).map(|l| l.acl.as_slice()), &t.acl, Some('U'));
        }
        for (k, t) in &target.domains {
            self.acl(ObjectKind::Domain, k, &format!("DOMAIN {}", qualified(&[&t.schema, &t.name])), None, live.domains.get(k).map(|l| l.acl.as_slice()), &t.acl, Some('U'));
        }
        for (k, t) in &target.sequences {
            self.acl(ObjectKind::Sequence, k, &format!("SEQUENCE {}", qualified(&[&t.schema, &t.name])), None, live.sequences.get(k).map(|l| l.acl.as_slice()), &t.acl, None);
        }
        for (k, t) in &target.functions {
            let on = format!("{} {}({})", t.sql_kind(), qualified(&[&t.schema, &t.name]), t.arguments);
            self.acl(ObjectKind::of_function(t), k, &on, None, live.functions.get(k).map(|l| l.acl.as_slice()), &t.acl, Some('X'));
        }
        for (k, t) in &target.tables {
            let on = format!("TABLE {}", qualified(&[&t.schema, &t.name]));
            let lt = live.tables.get(k);
            self.acl(ObjectKind::Table, k, &on, None, lt.map(|l| l.acl.as_slice()), &t.acl, None);
            for n in t.column_order() {
                let ck = t.column_key(&n);
                let l = if self.was_created(ObjectKind::Table, k) { None } else { lt.and_then(|l| l.columns.get(&n)).map(|c| c.acl.as_slice()) };
                let l = if self.was_created(ObjectKind::Column, &ck) { None } else { l };
                self.acl(ObjectKind::Column, &ck, &on, Some(&n), Some(l.unwrap_or_default()), &t.columns[&n].acl, None);
            }
        }
        for (k, t) in &target.views {
            let on = format!("TABLE {}", qualified(&[&t.schema, &t.name]));
            self.acl(ObjectKind::of_view(t), k, &on, None, live.views.get(k).map(|l| l.acl.as_slice()), &t.acl, None);
        }
    }
}
