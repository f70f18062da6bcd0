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

use super::diff::{
    same_core, type_change_is_lossy, ObjectKind, COLUMN_STRIP, SEQUENCE_STRIP, VIEW_STRIP,
};
use super::model::*;
use super::quote::{ddl_name, identity, parse_identity, qualified, quote_ident, quote_literal};
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
    /// The role that owns what the statement creates or changes (for a part of a
    /// table, the table's owner): the rollback runs the statement as that role, so
    /// that what it creates is that role's and any code it sets off runs with that
    /// role's rights. `None`: not known (the caller runs it).
    #[serde(default)]
    pub owner: Option<String>,
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

/// The plan with each statement's owner (see [`Statement::owner`]): what the rollback
/// runs. A creation whose owner the snapshot does not record (taken before pg_migsafe
/// 0.2.0) becomes a cannot-revert item: re-created as the caller, it would be the
/// caller's (a SECURITY DEFINER function, a view's rights) and its code would run with
/// the caller's rights. So does a step whose owner `role_exists` denies (the role was
/// dropped since the snapshot): nobody may run it as a role that is gone.
pub fn with_owners(
    mut out: Vec<Statement>,
    live: &Schema,
    target: &Schema,
    role_exists: &dyn Fn(&str) -> bool,
) -> Vec<Statement> {
    for s in &mut out {
        if !s.is_executable() {
            continue;
        }
        s.owner = statement_owner(s, live, target);
        let why = match &s.owner {
            None if s.operation == Operation::Create => Some(
                "the snapshot records no owner for it (taken before pg_migsafe 0.2.0)".to_string(),
            ),
            Some(role) if !role_exists(role) => {
                Some(format!("its owner {} no longer exists", quote_ident(role)))
            }
            _ => None,
        };
        if let Some(why) = why {
            s.note = Some(format!(
                "{why}: {} as the role that is to own it: {}",
                if s.operation == Operation::Create {
                    "re-create it"
                } else {
                    "run it"
                },
                s.sql.replace(['\n', '\r'], " ")
            ));
            s.owner = None;
            s.sql = Planner::comment_line(
                Operation::CannotRevert,
                &format!("{} {}", s.kind.as_str(), s.identity),
            );
            s.operation = Operation::CannotRevert;
        }
    }
    out
}

/// The owner of the object a statement creates or changes: for a part of a table
/// (column, constraint, index, trigger, policy) the table's; for a comment or
/// privileges, the object's. A creation looks in the snapshot first, anything else in
/// the live schema first.
fn statement_owner(s: &Statement, live: &Schema, target: &Schema) -> Option<String> {
    let (kind, key): (ObjectKind, &str) = match s.kind {
        ObjectKind::Comment | ObjectKind::Privileges => {
            let at = s.identity.find('"')?;
            let word = s.identity[..at].trim();
            let kind = [
                ObjectKind::Schema,
                ObjectKind::Table,
                ObjectKind::Column,
                ObjectKind::Constraint,
                ObjectKind::Index,
                ObjectKind::Sequence,
                ObjectKind::View,
                ObjectKind::MaterializedView,
                ObjectKind::Enum,
                ObjectKind::Domain,
                ObjectKind::Function,
                ObjectKind::Procedure,
                ObjectKind::Trigger,
                ObjectKind::Policy,
            ]
            .into_iter()
            .find(|k| k.as_str() == word)?;
            (kind, &s.identity[at..])
        }
        k => (k, s.identity.as_str()),
    };
    let relation = |m: &Schema, k: &str| -> Option<String> {
        m.tables
            .get(k)
            .map(|t| t.owner.clone())
            .or_else(|| m.views.get(k).map(|v| v.owner.clone()))
            .or_else(|| m.sequences.get(k).map(|q| q.owner.clone()))
            .flatten()
    };
    let find = |m: &Schema| -> Option<String> {
        match kind {
            ObjectKind::Schema => m.schemas.get(key).and_then(|n| n.owner.clone()),
            ObjectKind::Table
            | ObjectKind::View
            | ObjectKind::MaterializedView
            | ObjectKind::Sequence => relation(m, key),
            ObjectKind::Column | ObjectKind::ColumnOrder => {
                let parts = parse_identity(key).ok()?;
                if parts.len() < 2 {
                    return None;
                }
                relation(m, &identity(&[&parts[0], &parts[1]]))
            }
            ObjectKind::Constraint => relation(m, &m.constraints.get(key)?.table),
            ObjectKind::Index => relation(m, &m.indexes.get(key)?.table),
            ObjectKind::Trigger => relation(m, &m.triggers.get(key)?.table),
            ObjectKind::Policy => relation(m, &m.policies.get(key)?.table),
            ObjectKind::Enum => m.enums.get(key).and_then(|e| e.owner.clone()),
            ObjectKind::Domain => m.domains.get(key).and_then(|d| d.owner.clone()),
            ObjectKind::Function | ObjectKind::Procedure => {
                m.functions.get(key).and_then(|f| f.owner.clone())
            }
            ObjectKind::Comment | ObjectKind::Privileges => None,
        }
    };
    if s.operation == Operation::Create {
        find(target).or_else(|| find(live))
    } else {
        find(live).or_else(|| find(target))
    }
}

/// A view definition as `pg_get_viewdef` prints it, without the trailing `;`.
fn view_body(def: &str) -> &str {
    def.trim().trim_end_matches(';').trim_end()
}

/// Topological order of `keys` (dependencies first), stable in key order; edges to
/// keys outside the set are ignored, cycles are broken where found. Iterative (an
/// explicit stack): a chain of thousands of views is a user's to build, and must not
/// exhaust the backend's stack.
fn topo(keys: &BTreeSet<String>, deps: &dyn Fn(&str) -> Vec<String>) -> Vec<String> {
    // state: false = on the path (visiting), true = done
    let mut state: BTreeMap<String, bool> = BTreeMap::new();
    let mut out = Vec::new();
    for root in keys {
        if state.contains_key(root) {
            continue;
        }
        state.insert(root.clone(), false);
        // (key, its dependencies still to visit, in order)
        let mut stack: Vec<(String, std::vec::IntoIter<String>)> =
            vec![(root.clone(), deps(root).into_iter())];
        while let Some((k, rest)) = stack.last_mut() {
            match rest.next() {
                Some(d) => {
                    if keys.contains(&d) && !state.contains_key(&d) {
                        state.insert(d.clone(), false);
                        let next = deps(&d).into_iter();
                        stack.push((d, next));
                    }
                }
                None => {
                    let k = k.clone();
                    state.insert(k.clone(), true);
                    out.push(k);
                    stack.pop();
                }
            }
        }
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
    con_plan(
        &l.definition,
        l.validated,
        &t.definition,
        t.validated,
        same_core(l, t, &strip),
    )
}

fn index_changed(l: &Index, t: &Index) -> bool {
    !same_core(l, t, &["valid"]) || (!l.valid && t.valid)
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
    fn name(
        chars: &mut std::iter::Peekable<std::str::Chars>,
        stop: Option<char>,
    ) -> Option<String> {
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
    let grantor = name(&mut chars, Some('/'))?;
    if chars.next().is_some() {
        return None;
    }
    Some(AclItem {
        grantee,
        privileges,
        grantor,
    })
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
        let tables_dropped: BTreeSet<String> = live
            .tables
            .keys()
            .filter(|k| !target.tables.contains_key(*k))
            .cloned()
            .collect();
        let tables_created: BTreeSet<String> = target
            .tables
            .keys()
            .filter(|k| !live.tables.contains_key(*k))
            .cloned()
            .collect();
        // Tables whose columns change type or collation: views reading
        // them are rebuilt, foreign keys to them re-added. (A dropped column needs
        // neither: an unchanged view or key of the snapshot cannot use it.)
        let mut structural = BTreeSet::new();
        for (k, l) in &live.tables {
            if let Some(t) = target.tables.get(k) {
                let changed = l.columns.iter().any(|(n, lc)| {
                    t.columns.get(n).is_some_and(|tc| {
                        lc.type_name != tc.type_name || lc.collation != tc.collation
                    })
                });
                if changed {
                    structural.insert(k.clone());
                }
            }
        }
        let mut key_changed: BTreeSet<String> =
            tables_dropped.union(&structural).cloned().collect();
        for (k, l) in &live.constraints {
            if l.kind != ConstraintKind::ForeignKey
                && target
                    .constraints
                    .get(k)
                    .is_none_or(|t| constraint_plan(l, t) == ConPlan::Recreate)
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
        let mut disturbed: BTreeSet<String> = tables_dropped.union(&structural).cloned().collect();
        for (k, l) in &live.functions {
            match target.functions.get(k) {
                None => {
                    disturbed.insert(k.clone());
                }
                Some(t) if !same_core(l, t, &[]) && (l.kind != t.kind || l.result != t.result) => {
                    disturbed.insert(k.clone());
                    functions_recreated.insert(k.clone());
                }
                _ => {}
            }
        }
        let mut views_dropped: BTreeSet<String> = live
            .views
            .iter()
            .filter(|(k, l)| {
                target
                    .views
                    .get(*k)
                    .is_none_or(|t| !same_core(*l, t, VIEW_STRIP))
            })
            .map(|(k, _)| k.clone())
            .collect();
        loop {
            disturbed.extend(views_dropped.iter().cloned());
            let more: Vec<String> = live
                .views
                .iter()
                .filter(|(k, v)| {
                    !views_dropped.contains(*k)
                        && v.depends_on.iter().any(|d| disturbed.contains(d))
                })
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

    fn push(
        &mut self,
        op: Operation,
        kind: ObjectKind,
        identity: &str,
        sql: String,
    ) -> &mut Statement {
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
            owner: None,
        });
        self.out.last_mut().expect("just pushed")
    }

    fn comment_line(op: Operation, text: &str) -> String {
        let prefix = if op == Operation::CannotRevert {
            "cannot revert: "
        } else {
            ""
        };
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
            if !self.rel_dropped(&l.table)
                && target.policies.get(k).is_none_or(|t| !same_core(l, t, &[]))
            {
                let sql = format!(
                    "DROP POLICY {} ON {}",
                    quote_ident(&l.name),
                    ddl_name(&l.table)
                );
                self.push(Operation::Drop, ObjectKind::Policy, k, sql);
            }
        }
        for (k, l) in &live.triggers {
            if !l.inherited
                && !self.rel_dropped(&l.table)
                && target
                    .triggers
                    .get(k)
                    .is_none_or(|t| !same_core(l, t, &["enabled"]))
            {
                let sql = format!(
                    "DROP TRIGGER {} ON {}",
                    quote_ident(&l.name),
                    ddl_name(&l.table)
                );
                self.push(Operation::Drop, ObjectKind::Trigger, k, sql);
            }
        }
        let order = topo(&self.views_dropped, &|k| live.views[k].depends_on.clone());
        for k in order.iter().rev() {
            let v = &live.views[k];
            let kind = ObjectKind::of_view(v);
            let what = if v.materialized {
                "MATERIALIZED VIEW"
            } else {
                "VIEW"
            };
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
                    let refs_dropped = l
                        .references
                        .as_ref()
                        .is_some_and(|r| self.tables_dropped.contains(r));
                    let refs_changed = t.is_some_and(|t| {
                        t.references
                            .as_ref()
                            .is_some_and(|r| self.key_changed.contains(r))
                    });
                    refs_dropped || (!self.rel_dropped(&l.table) && (changed || refs_changed))
                } else {
                    !self.rel_dropped(&l.table) && changed
                };
                if drop {
                    let sql = format!(
                        "ALTER TABLE {} DROP CONSTRAINT {}",
                        ddl_name(&l.table),
                        quote_ident(&l.name)
                    );
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
            let sql = format!(
                "DROP {} {}({})",
                f.sql_kind(),
                qualified(&[&f.schema, &f.name]),
                f.arguments
            );
            self.push(Operation::Drop, ObjectKind::of_function(f), &k, sql)
                .note = Some("its result type or kind changes: dropped and re-created".into());
        }
    }

    // ---- step 2 -------------------------------------------------------------

    fn create_bases(&mut self) {
        let (live, target) = (self.live, self.target);
        for (k, t) in &target.schemas {
            if !live.schemas.contains_key(k) {
                self.push(
                    Operation::Create,
                    ObjectKind::Schema,
                    k,
                    format!("CREATE SCHEMA {}", quote_ident(&t.name)),
                );
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
                    self.push(
                        Operation::Create,
                        ObjectKind::Sequence,
                        k,
                        format!("CREATE SEQUENCE {name} {opts}"),
                    );
                }
                Some(l) => {
                    let strip = [SEQUENCE_STRIP, &["owned_by"]].concat();
                    if !same_core(l, t, &strip) {
                        self.push(
                            Operation::Alter,
                            ObjectKind::Sequence,
                            k,
                            format!("ALTER SEQUENCE {name} {opts}"),
                        );
                    }
                }
            }
        }
        let functions: Vec<(&String, &Function)> = target
            .functions
            .iter()
            .filter(|(k, t)| {
                self.functions_recreated.contains(*k)
                    || live
                        .functions
                        .get(*k)
                        .is_none_or(|l| !same_core(l, *t, &[]))
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
                (Some(b), _) => (
                    format!(" BEFORE {}", quote_literal(b)),
                    current.iter().position(|x| x == b).unwrap_or(0),
                ),
                (None, Some(a)) => (
                    format!(" AFTER {}", quote_literal(a)),
                    current
                        .iter()
                        .position(|x| x == a)
                        .map_or(current.len(), |p| p + 1),
                ),
                (None, None) => (String::new(), current.len()),
            };
            current.insert(pos, label.clone());
            let sql = format!(
                "ALTER TYPE {name} ADD VALUE {}{clause}",
                quote_literal(label)
            );
            self.push(Operation::Alter, ObjectKind::Enum, key, sql).note =
                Some("a label added back cannot be used before the transaction commits".into());
        }
    }

    fn domain_check_sql(name: &str, c: &DomainCheck) -> String {
        format!(
            "ALTER DOMAIN {name} ADD CONSTRAINT {} {}",
            quote_ident(&c.name),
            c.definition
        )
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
            self.push(
                Operation::Alter,
                ObjectKind::Domain,
                key,
                Self::domain_check_sql(&name, c),
            );
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
            self.push(
                Operation::Alter,
                ObjectKind::Domain,
                key,
                format!("ALTER DOMAIN {name} {what} NOT NULL"),
            );
        }
        let mut add = Vec::new();
        for (n, lc) in &l.checks {
            let plan = t.checks.get(n).map(|tc| {
                con_plan(
                    &lc.definition,
                    lc.validated,
                    &tc.definition,
                    tc.validated,
                    true,
                )
            });
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
        add.extend(
            t.checks
                .iter()
                .filter(|(n, _)| !l.checks.contains_key(*n))
                .map(|(_, c)| c),
        );
        for c in add {
            self.push(
                Operation::Alter,
                ObjectKind::Domain,
                key,
                Self::domain_check_sql(&name, c),
            );
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
        let unlogged = if t.persistence == Persistence::Unlogged {
            "UNLOGGED "
        } else {
            ""
        };
        let part_by = t
            .partition_key
            .as_ref()
            .map(|k| format!(" PARTITION BY {k}"))
            .unwrap_or_default();
        if let (Some(bound), Some(parent)) = (&t.partition_bound, t.inherits.first()) {
            return format!(
                "CREATE {unlogged}TABLE {name} PARTITION OF {} {bound}{part_by}",
                ddl_name(parent)
            );
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
        format!(
            "CREATE {unlogged}TABLE {name} ({}){inherits}{part_by}",
            cols.join(", ")
        )
    }

    fn tables(&mut self) {
        let (live, target) = (self.live, self.target);
        // Detach and disinherit first: a parent may be dropped next.
        for (k, l) in &live.tables {
            let Some(t) = target.tables.get(k) else {
                continue;
            };
            let name = qualified(&[&l.schema, &l.name]);
            if l.partition_bound.is_some() {
                if t.partition_bound != l.partition_bound
                    || t.inherits.first() != l.inherits.first()
                {
                    if let Some(parent) = l.inherits.first() {
                        let sql =
                            format!("ALTER TABLE {} DETACH PARTITION {name}", ddl_name(parent));
                        self.push(Operation::Alter, ObjectKind::Table, k, sql);
                    }
                }
            } else {
                for p in l.inherits.iter().filter(|p| !t.inherits.contains(p)) {
                    self.push(
                        Operation::Alter,
                        ObjectKind::Table,
                        k,
                        format!("ALTER TABLE {name} NO INHERIT {}", ddl_name(p)),
                    );
                }
            }
        }
        let order = topo(&self.tables_dropped, &|k| live.tables[k].inherits.clone());
        for k in order.iter().rev() {
            let l = &live.tables[k];
            let st = self.push(
                Operation::Drop,
                ObjectKind::Table,
                k,
                format!("DROP TABLE {}", qualified(&[&l.schema, &l.name])),
            );
            st.drops_data = l.may_have_data();
            st.drops = Some(DataObject::Table { table: k.clone() });
        }
        let order = topo(&self.tables_created, &|k| target.tables[k].inherits.clone());
        for k in &order {
            let t = &target.tables[k];
            let st = self.push(
                Operation::Create,
                ObjectKind::Table,
                k,
                Self::create_table_sql(t),
            );
            st.recreates = Some(DataObject::Table { table: k.clone() });
            if t.rls_enabled {
                let sql = format!(
                    "ALTER TABLE {} ENABLE ROW LEVEL SECURITY",
                    qualified(&[&t.schema, &t.name])
                );
                self.push(Operation::Alter, ObjectKind::Table, k, sql);
            }
            if t.rls_forced {
                let sql = format!(
                    "ALTER TABLE {} FORCE ROW LEVEL SECURITY",
                    qualified(&[&t.schema, &t.name])
                );
                self.push(Operation::Alter, ObjectKind::Table, k, sql);
            }
            for c in t.columns.values() {
                self.created
                    .insert((ObjectKind::Column, t.column_key(&c.name)));
            }
        }
        for (k, l) in &live.tables {
            if let Some(t) = target.tables.get(k).filter(|t| *t != l) {
                self.alter_table(k, l, t);
            }
        }
    }

    fn alter_table(&mut self, key: &str, l: &Table, t: &Table) {
        let name = qualified(&[&t.schema, &t.name]);
        let alter = |rest: String| format!("ALTER TABLE {name} {rest}");
        if l.persistence != t.persistence {
            let what = if t.persistence == Persistence::Unlogged {
                "SET UNLOGGED"
            } else {
                "SET LOGGED"
            };
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
        // A column the target knows under another name at the same attribute number
        // (and of the same type) was renamed: rename it back, keeping its values.
        let mut renamed = l.clone();
        for lc in l.columns.values() {
            if !lc.local || t.columns.contains_key(&lc.name) {
                continue;
            }
            let Some(tc) = t.columns.values().find(|tc| {
                tc.position == lc.position
                    && tc.type_name == lc.type_name
                    && !l.columns.contains_key(&tc.name)
            }) else {
                continue;
            };
            self.push(
                Operation::Alter,
                ObjectKind::Column,
                &t.column_key(&tc.name),
                alter(format!(
                    "RENAME COLUMN {} TO {}",
                    quote_ident(&lc.name),
                    quote_ident(&tc.name)
                )),
            );
            let mut c = renamed.columns.remove(&lc.name).expect("a live column");
            c.name = tc.name.clone();
            renamed.columns.insert(tc.name.clone(), c);
        }
        let l = &renamed;
        for lc in l.columns.values() {
            if lc.local && !t.columns.contains_key(&lc.name) {
                let st = self.push(
                    Operation::Drop,
                    ObjectKind::Column,
                    &t.column_key(&lc.name),
                    alter(format!("DROP COLUMN {}", quote_ident(&lc.name))),
                );
                st.drops_data = l.may_have_data();
                st.drops = Some(DataObject::Column {
                    table: key.to_string(),
                    column: lc.name.clone(),
                });
            }
        }
        for n in t.column_order() {
            let tc = &t.columns[&n];
            if tc.local && !l.columns.contains_key(&n) {
                let ck = t.column_key(&n);
                let st = self.push(
                    Operation::Create,
                    ObjectKind::Column,
                    &ck,
                    alter(format!("ADD COLUMN {}", Self::column_sql(tc))),
                );
                st.recreates = Some(DataObject::Column {
                    table: key.to_string(),
                    column: n.clone(),
                });
                st.note = Some("the column comes back at the end of the table".into());
            }
        }
        for n in l.column_order() {
            let lc = &l.columns[&n];
            if let Some(tc) = t.columns.get(&n) {
                if !same_core(lc, tc, COLUMN_STRIP) {
                    self.alter_column(&name, l, lc, tc);
                }
            }
        }
        if l.rls_enabled != t.rls_enabled {
            let what = if t.rls_enabled { "ENABLE" } else { "DISABLE" };
            self.push(
                Operation::Alter,
                ObjectKind::Table,
                key,
                alter(format!("{what} ROW LEVEL SECURITY")),
            );
        }
        if l.rls_forced != t.rls_forced {
            let what = if t.rls_forced { "FORCE" } else { "NO FORCE" };
            self.push(
                Operation::Alter,
                ObjectKind::Table,
                key,
                alter(format!("{what} ROW LEVEL SECURITY")),
            );
        }
        if t.partition_bound.is_some() {
            if t.partition_bound != l.partition_bound || t.inherits.first() != l.inherits.first() {
                if let (Some(parent), Some(bound)) = (t.inherits.first(), &t.partition_bound) {
                    let sql = format!(
                        "ALTER TABLE {} ATTACH PARTITION {name} {bound}",
                        ddl_name(parent)
                    );
                    self.push(Operation::Alter, ObjectKind::Table, key, sql);
                }
            }
        } else {
            for p in t.inherits.iter().filter(|p| !l.inherits.contains(p)) {
                self.push(
                    Operation::Alter,
                    ObjectKind::Table,
                    key,
                    alter(format!("INHERIT {}", ddl_name(p))),
                );
            }
        }
        // The order the table will have: kept columns as they are, re-added ones last.
        let mut will: Vec<String> = l
            .column_order()
            .into_iter()
            .filter(|c| t.columns.contains_key(c))
            .collect();
        will.extend(
            t.column_order()
                .into_iter()
                .filter(|c| !l.columns.contains_key(c)),
        );
        let want = t.column_order();
        if will != want {
            let list = |v: &[String]| {
                v.iter()
                    .map(|c| quote_ident(c))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
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
            self.push(
                Operation::Alter,
                ObjectKind::Column,
                &ck,
                alter("DROP IDENTITY".into()),
            );
        }
        if lc.default != tc.default && tc.default.is_none() && lc.generated.is_none() {
            self.push(
                Operation::Alter,
                ObjectKind::Column,
                &ck,
                alter("DROP DEFAULT".into()),
            );
        }
        if lc.generated != tc.generated {
            if tc.generated.is_none() {
                self.push(
                    Operation::Alter,
                    ObjectKind::Column,
                    &ck,
                    alter("DROP EXPRESSION".into()),
                );
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
            let using = if lc.type_name != tc.type_name {
                format!(" USING {col}::{}", tc.type_name)
            } else {
                String::new()
            };
            let st = self.push(
                Operation::Alter,
                ObjectKind::Column,
                &ck,
                alter(format!("TYPE {}{collate}{using}", tc.type_name)),
            );
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
                self.push(
                    Operation::Alter,
                    ObjectKind::Column,
                    &ck,
                    alter(format!("SET DEFAULT {d}")),
                );
            }
        }
        if lc.not_null != tc.not_null {
            let what = if tc.not_null {
                "SET NOT NULL"
            } else {
                "DROP NOT NULL"
            };
            self.push(
                Operation::Alter,
                ObjectKind::Column,
                &ck,
                alter(what.into()),
            );
        }
        match (lc.identity, tc.identity) {
            (None, Some(k)) => {
                self.push(
                    Operation::Alter,
                    ObjectKind::Column,
                    &ck,
                    alter(format!("ADD GENERATED {} AS IDENTITY", k.sql())),
                );
            }
            (Some(a), Some(b)) if a != b => {
                self.push(
                    Operation::Alter,
                    ObjectKind::Column,
                    &ck,
                    alter(format!("SET GENERATED {}", b.sql())),
                );
            }
            _ => {}
        }
    }

    // ---- step 4 -------------------------------------------------------------

    /// The column with this identity key disappears in step 3.
    fn column_dropped(&self, column_key: &str) -> bool {
        let Ok(parts) = parse_identity(column_key) else {
            return false;
        };
        if parts.len() != 3 {
            return false;
        }
        let table = super::quote::identity(&[&parts[0], &parts[1]]);
        if self.tables_dropped.contains(&table) {
            return true;
        }
        match (self.live.tables.get(&table), self.target.tables.get(&table)) {
            (Some(l), Some(t)) => {
                l.columns.contains_key(&parts[2]) && !t.columns.contains_key(&parts[2])
            }
            _ => false,
        }
    }

    fn drop_bases(&mut self) {
        let (live, target) = (self.live, self.target);
        for (k, l) in &live.sequences {
            if !target.sequences.contains_key(k)
                && !l.owned_by.as_ref().is_some_and(|c| self.column_dropped(c))
            {
                let st = self.push(
                    Operation::Drop,
                    ObjectKind::Sequence,
                    k,
                    format!("DROP SEQUENCE {}", qualified(&[&l.schema, &l.name])),
                );
                st.drops_data = true;
            }
        }
        for (k, l) in &live.functions {
            if !target.functions.contains_key(k) {
                let sql = format!(
                    "DROP {} {}({})",
                    l.sql_kind(),
                    qualified(&[&l.schema, &l.name]),
                    l.arguments
                );
                self.push(Operation::Drop, ObjectKind::of_function(l), k, sql);
            }
        }
        for (k, l) in &live.domains {
            if !target.domains.contains_key(k) {
                self.push(
                    Operation::Drop,
                    ObjectKind::Domain,
                    k,
                    format!("DROP DOMAIN {}", qualified(&[&l.schema, &l.name])),
                );
            }
        }
        for (k, l) in &live.enums {
            if !target.enums.contains_key(k) {
                self.push(
                    Operation::Drop,
                    ObjectKind::Enum,
                    k,
                    format!("DROP TYPE {}", qualified(&[&l.schema, &l.name])),
                );
            }
        }
        for (k, l) in &live.schemas {
            if !target.schemas.contains_key(k) {
                self.push(
                    Operation::Drop,
                    ObjectKind::Schema,
                    k,
                    format!("DROP SCHEMA {}", quote_ident(&l.name)),
                );
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
                self.push(
                    Operation::Create,
                    ObjectKind::Index,
                    k,
                    t.definition.trim_end().trim_end_matches(';').to_string(),
                );
            } else if l.is_some_and(|l| l.valid && !t.valid) {
                self.note(
                    Operation::Note,
                    ObjectKind::Index,
                    k,
                    &format!(
                        "index {} stays valid (it was invalid in the snapshot)",
                        qualified(&[&t.schema, &t.name])
                    ),
                );
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
                let sql = format!(
                    "ALTER SEQUENCE {} OWNED BY {owner}",
                    qualified(&[&t.schema, &t.name])
                );
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
                    let sql = format!(
                        "ALTER TABLE {table} ADD CONSTRAINT {} {}",
                        quote_ident(&t.name),
                        t.definition
                    );
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
                let data = if v.has_data == Some(false) {
                    "WITH NO DATA"
                } else {
                    "WITH DATA"
                };
                format!(
                    "CREATE MATERIALIZED VIEW {name} AS {} {data}",
                    view_body(&v.definition)
                )
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
                self.push(
                    Operation::Create,
                    ObjectKind::Trigger,
                    k,
                    t.definition.trim_end().trim_end_matches(';').to_string(),
                );
            }
            let current = if created {
                "O"
            } else {
                l.map_or("O", |l| l.enabled.as_str())
            };
            if current != t.enabled {
                let what = match t.enabled.as_str() {
                    "D" => "DISABLE",
                    "R" => "ENABLE REPLICA",
                    "A" => "ENABLE ALWAYS",
                    _ => "ENABLE",
                };
                let sql = format!(
                    "ALTER TABLE {} {what} TRIGGER {}",
                    ddl_name(&t.table),
                    quote_ident(&t.name)
                );
                self.push(Operation::Alter, ObjectKind::Trigger, k, sql);
            }
        }
        for (k, t) in &target.policies {
            if self.needs_create(
                ObjectKind::Policy,
                k,
                &t.table,
                live.policies.contains_key(k),
            ) {
                let mut sql = format!(
                    "CREATE POLICY {} ON {} AS {} FOR {}",
                    quote_ident(&t.name),
                    ddl_name(&t.table),
                    if t.permissive {
                        "PERMISSIVE"
                    } else {
                        "RESTRICTIVE"
                    },
                    t.command
                );
                if !t.roles.is_empty() {
                    let roles: Vec<String> = t
                        .roles
                        .iter()
                        .map(|r| {
                            if r == "public" {
                                "PUBLIC".to_string()
                            } else {
                                quote_ident(r)
                            }
                        })
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
                let sql = format!(
                    "SELECT pg_catalog.setval({}, {v}, true)",
                    quote_literal(&qualified(&[&t.schema, &t.name]))
                );
                self.push(Operation::Alter, ObjectKind::Sequence, k, sql)
                    .note = Some("the sequence continues where it stood at the snapshot".into());
            }
        }
    }

    // ---- comments and privileges ---------------------------------------------

    fn comment(
        &mut self,
        kind: ObjectKind,
        key: &str,
        object: String,
        live: Option<&str>,
        target: Option<&str>,
    ) {
        let live = if self.was_created(kind, key) {
            None
        } else {
            live
        };
        if live != target {
            let sql = format!(
                "COMMENT ON {object} IS {}",
                target.map_or("NULL".to_string(), quote_literal)
            );
            self.push(
                Operation::Comment,
                ObjectKind::Comment,
                &format!("{kind} {key}"),
                sql,
            );
        }
    }

    fn comments(&mut self) {
        let (live, target) = (self.live, self.target);
        for (k, t) in &target.schemas {
            let l = live.schemas.get(k).and_then(|l| l.comment.as_deref());
            self.comment(
                ObjectKind::Schema,
                k,
                format!("SCHEMA {}", quote_ident(&t.name)),
                l,
                t.comment.as_deref(),
            );
        }
        for (k, t) in &target.enums {
            let l = live.enums.get(k).and_then(|l| l.comment.as_deref());
            self.comment(
                ObjectKind::Enum,
                k,
                format!("TYPE {}", qualified(&[&t.schema, &t.name])),
                l,
                t.comment.as_deref(),
            );
        }
        for (k, t) in &target.domains {
            let l = live.domains.get(k).and_then(|l| l.comment.as_deref());
            self.comment(
                ObjectKind::Domain,
                k,
                format!("DOMAIN {}", qualified(&[&t.schema, &t.name])),
                l,
                t.comment.as_deref(),
            );
        }
        for (k, t) in &target.sequences {
            let l = live.sequences.get(k).and_then(|l| l.comment.as_deref());
            self.comment(
                ObjectKind::Sequence,
                k,
                format!("SEQUENCE {}", qualified(&[&t.schema, &t.name])),
                l,
                t.comment.as_deref(),
            );
        }
        for (k, t) in &target.functions {
            let l = live.functions.get(k).and_then(|l| l.comment.as_deref());
            let obj = format!(
                "{} {}({})",
                t.sql_kind(),
                qualified(&[&t.schema, &t.name]),
                t.arguments
            );
            self.comment(ObjectKind::of_function(t), k, obj, l, t.comment.as_deref());
        }
        for (k, t) in &target.tables {
            let lt = live.tables.get(k);
            let name = qualified(&[&t.schema, &t.name]);
            self.comment(
                ObjectKind::Table,
                k,
                format!("TABLE {name}"),
                lt.and_then(|l| l.comment.as_deref()),
                t.comment.as_deref(),
            );
            for n in t.column_order() {
                let c = &t.columns[&n];
                let l = if self.was_created(ObjectKind::Table, k) {
                    None
                } else {
                    lt.and_then(|l| l.columns.get(&n))
                        .and_then(|l| l.comment.as_deref())
                };
                let obj = format!("COLUMN {name}.{}", quote_ident(&n));
                self.comment(
                    ObjectKind::Column,
                    &t.column_key(&n),
                    obj,
                    l,
                    c.comment.as_deref(),
                );
            }
        }
        for (k, t) in &target.constraints {
            let l = live.constraints.get(k).and_then(|l| l.comment.as_deref());
            let obj = format!(
                "CONSTRAINT {} ON {}",
                quote_ident(&t.name),
                ddl_name(&t.table)
            );
            self.comment(ObjectKind::Constraint, k, obj, l, t.comment.as_deref());
        }
        for (k, t) in &target.indexes {
            // A constraint's index is re-created with its constraint or relation.
            let owner = format!("{} on {}", super::quote::identity(&[&t.name]), t.table);
            let recreated = t.constraint
                && (self.rel_created(&t.table) || self.was_created(ObjectKind::Constraint, &owner));
            let l = if recreated {
                None
            } else {
                live.indexes.get(k).and_then(|l| l.comment.as_deref())
            };
            self.comment(
                ObjectKind::Index,
                k,
                format!("INDEX {}", qualified(&[&t.schema, &t.name])),
                l,
                t.comment.as_deref(),
            );
        }
        for (k, t) in &target.views {
            let l = live.views.get(k).and_then(|l| l.comment.as_deref());
            let what = if t.materialized {
                "MATERIALIZED VIEW"
            } else {
                "VIEW"
            };
            self.comment(
                ObjectKind::of_view(t),
                k,
                format!("{what} {}", qualified(&[&t.schema, &t.name])),
                l,
                t.comment.as_deref(),
            );
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
    fn acl(
        &mut self,
        kind: ObjectKind,
        key: &str,
        on: &str,
        column: Option<&str>,
        live: Option<&[String]>,
        target: &[String],
        default_public: Option<char>,
    ) {
        let id = format!("{kind} {key}");
        let created = self.was_created(kind, key) || live.is_none();
        let live_map = if created {
            Ok(default_public
                .map(|p| AclMap::from([(String::new(), BTreeMap::from([(p, false)]))]))
                .unwrap_or_default())
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
            let revoke_go = names(
                l.iter()
                    .filter(|(c, go)| **go && t.get(c) == Some(&false))
                    .map(|(c, _)| *c)
                    .collect(),
            );
            let grant = names(
                t.iter()
                    .filter(|(c, go)| !**go && !l.contains_key(c))
                    .map(|(c, _)| *c)
                    .collect(),
            );
            let grant_go = names(
                t.iter()
                    .filter(|(c, go)| **go && l.get(c) != Some(&true))
                    .map(|(c, _)| *c)
                    .collect(),
            );
            if let Some(p) = revoke {
                self.push(
                    Operation::Revoke,
                    ObjectKind::Privileges,
                    &id,
                    format!("REVOKE {p} ON {on} FROM {who}"),
                );
            }
            if let Some(p) = revoke_go {
                self.push(
                    Operation::Revoke,
                    ObjectKind::Privileges,
                    &id,
                    format!("REVOKE GRANT OPTION FOR {p} ON {on} FROM {who}"),
                );
            }
            if let Some(p) = grant {
                self.push(
                    Operation::Grant,
                    ObjectKind::Privileges,
                    &id,
                    format!("GRANT {p} ON {on} TO {who}"),
                );
            }
            if let Some(p) = grant_go {
                self.push(
                    Operation::Grant,
                    ObjectKind::Privileges,
                    &id,
                    format!("GRANT {p} ON {on} TO {who} WITH GRANT OPTION"),
                );
            }
        }
    }

    fn privileges(&mut self) {
        let (live, target) = (self.live, self.target);
        for (k, t) in &target.schemas {
            self.acl(
                ObjectKind::Schema,
                k,
                &format!("SCHEMA {}", quote_ident(&t.name)),
                None,
                live.schemas.get(k).map(|l| l.acl.as_slice()),
                &t.acl,
                None,
            );
        }
        for (k, t) in &target.enums {
            self.acl(
                ObjectKind::Enum,
                k,
                &format!("TYPE {}", qualified(&[&t.schema, &t.name])),
                None,
                live.enums.get(k).map(|l| l.acl.as_slice()),
                &t.acl,
                Some('U'),
            );
        }
        for (k, t) in &target.domains {
            self.acl(
                ObjectKind::Domain,
                k,
                &format!("DOMAIN {}", qualified(&[&t.schema, &t.name])),
                None,
                live.domains.get(k).map(|l| l.acl.as_slice()),
                &t.acl,
                Some('U'),
            );
        }
        for (k, t) in &target.sequences {
            self.acl(
                ObjectKind::Sequence,
                k,
                &format!("SEQUENCE {}", qualified(&[&t.schema, &t.name])),
                None,
                live.sequences.get(k).map(|l| l.acl.as_slice()),
                &t.acl,
                None,
            );
        }
        for (k, t) in &target.functions {
            let on = format!(
                "{} {}({})",
                t.sql_kind(),
                qualified(&[&t.schema, &t.name]),
                t.arguments
            );
            self.acl(
                ObjectKind::of_function(t),
                k,
                &on,
                None,
                live.functions.get(k).map(|l| l.acl.as_slice()),
                &t.acl,
                Some('X'),
            );
        }
        for (k, t) in &target.tables {
            let on = format!("TABLE {}", qualified(&[&t.schema, &t.name]));
            let lt = live.tables.get(k);
            self.acl(
                ObjectKind::Table,
                k,
                &on,
                None,
                lt.map(|l| l.acl.as_slice()),
                &t.acl,
                None,
            );
            for n in t.column_order() {
                let ck = t.column_key(&n);
                let l = if self.was_created(ObjectKind::Table, k) {
                    None
                } else {
                    lt.and_then(|l| l.columns.get(&n)).map(|c| c.acl.as_slice())
                };
                let l = if self.was_created(ObjectKind::Column, &ck) {
                    None
                } else {
                    l
                };
                self.acl(
                    ObjectKind::Column,
                    &ck,
                    &on,
                    Some(&n),
                    Some(l.unwrap_or_default()),
                    &t.columns[&n].acl,
                    None,
                );
            }
        }
        for (k, t) in &target.views {
            let on = format!("TABLE {}", qualified(&[&t.schema, &t.name]));
            self.acl(
                ObjectKind::of_view(t),
                k,
                &on,
                None,
                live.views.get(k).map(|l| l.acl.as_slice()),
                &t.acl,
                None,
            );
        }
    }
}

#[cfg(test)]
mod rename_tests {
    use super::*;
    use crate::schema::diff::tests::table;

    #[test]
    fn a_renamed_column_is_renamed_back() {
        let mut target = Schema::default();
        target.insert(table("public", "users", &[("id", "int"), ("name", "text")]));
        let mut live = Schema::default();
        live.insert(table(
            "public",
            "users",
            &[("id", "int"), ("full name", "text")],
        ));
        let st = rollback_sql(&live, &target);
        let sql: Vec<&str> = st.iter().map(|s| s.sql.as_str()).collect();
        assert_eq!(
            sql,
            ["ALTER TABLE public.users RENAME COLUMN \"full name\" TO name"],
            "{sql:?}"
        );
        // A different type at that position is not a rename.
        let mut live2 = Schema::default();
        live2.insert(table(
            "public",
            "users",
            &[("id", "int"), ("full_name", "bigint")],
        ));
        let sql: Vec<String> = rollback_sql(&live2, &target)
            .into_iter()
            .map(|s| s.sql)
            .collect();
        assert!(
            sql.iter().any(|s| s.contains("DROP COLUMN full_name")),
            "{sql:?}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::diff::tests::{sample, table};
    use crate::schema::diff::{diff, Action};
    use crate::schema::quote::identity;

    const USERS: &str = "\"public\".\"users\"";
    const ORDERS: &str = "\"public\".\"orders\"";

    fn sqls(st: &[Statement]) -> Vec<&str> {
        st.iter().map(|s| s.sql.as_str()).collect()
    }

    fn pos(st: &[Statement], needle: &str) -> usize {
        st.iter()
            .position(|s| s.sql.contains(needle))
            .unwrap_or_else(|| panic!("no statement containing {needle:?} in {:#?}", sqls(st)))
    }

    /// Removes a table and everything on it or using it.
    fn without_table(s: &Schema, key: &str) -> Schema {
        let mut s = s.clone();
        s.tables.remove(key);
        s.constraints
            .retain(|_, c| c.table != key && c.references.as_deref() != Some(key));
        s.indexes.retain(|_, i| i.table != key);
        s.triggers.retain(|_, t| t.table != key);
        s.policies.retain(|_, p| p.table != key);
        s.views
            .retain(|_, v| !v.depends_on.iter().any(|d| d == key));
        s
    }

    #[test]
    fn nothing_to_do_for_identical_schemas() {
        let s = sample();
        assert!(rollback_sql(&s, &s).is_empty());
        assert!(rollback_sql(&Schema::default(), &Schema::default()).is_empty());
        assert_eq!(to_script(&[]), "");
    }

    #[test]
    fn an_added_table_is_dropped_and_a_dropped_table_is_created() {
        let target = sample();
        let mut live = target.clone();
        live.insert(table("public", "New T", &[("id", "integer")]));
        let st = rollback_sql(&live, &target);
        assert_eq!(sqls(&st), ["DROP TABLE public.\"New T\""]);
        assert_eq!(st[0].operation, Operation::Drop);
        assert!(st[0].drops_data);
        assert_eq!(
            st[0].drops,
            Some(DataObject::Table {
                table: "\"public\".\"New T\"".into()
            })
        );

        let st = rollback_sql(&target, &live);
        assert_eq!(sqls(&st), ["CREATE TABLE public.\"New T\" (id integer)"]);
        assert_eq!(
            st[0].recreates,
            Some(DataObject::Table {
                table: "\"public\".\"New T\"".into()
            })
        );
        assert!(!st[0].drops_data);

        live.tables
            .get_mut("\"public\".\"New T\"")
            .unwrap()
            .has_data = Some(false);
        assert!(!rollback_sql(&live, &target)[0].drops_data);
    }

    #[test]
    fn an_added_column_is_dropped_and_a_dropped_column_is_added_at_the_end() {
        let target = sample();
        let mut live = target.clone();
        live.tables
            .get_mut(USERS)
            .unwrap()
            .columns
            .insert("extra".into(), Column::new("extra", 9, "jsonb"));
        let st = rollback_sql(&live, &target);
        assert_eq!(sqls(&st), ["ALTER TABLE public.users DROP COLUMN extra"]);
        assert!(st[0].drops_data);
        assert_eq!(st[0].identity, "\"public\".\"users\".\"extra\"");
        assert_eq!(
            st[0].drops,
            Some(DataObject::Column {
                table: USERS.into(),
                column: "extra".into()
            })
        );
        let st = rollback_sql(&target, &live);
        assert_eq!(
            sqls(&st),
            ["ALTER TABLE public.users ADD COLUMN extra jsonb"]
        );
        assert_eq!(
            st[0].recreates,
            Some(DataObject::Column {
                table: USERS.into(),
                column: "extra".into()
            })
        );

        // A column from the middle comes back last, and the plan says so.
        let mut live = target.clone();
        live.tables.get_mut(USERS).unwrap().columns.remove("email");
        live.views.clear(); // the view used it
        let mut tgt = target.clone();
        tgt.views.clear();
        let st = rollback_sql(&live, &tgt);
        assert_eq!(st.len(), 2, "{:#?}", sqls(&st));
        assert_eq!(st[0].sql, "ALTER TABLE public.users ADD COLUMN email text");
        assert_eq!(st[1].operation, Operation::Note);
        assert_eq!(st[1].kind, ObjectKind::ColumnOrder);
        assert!(
            st[1].sql.starts_with(
                "-- the columns of public.users will be in the order (id, \"Full Name\", email)"
            ),
            "{}",
            st[1].sql
        );
        assert!(!st[1].is_executable());
    }

    #[test]
    fn dependents_are_dropped_before_the_table_they_use() {
        let live = sample();
        let target = without_table(&live, USERS);
        let st = rollback_sql(&live, &target);
        let drop_table = pos(&st, "DROP TABLE public.users");
        for dep in [
            "DROP VIEW public.user_emails",
            "DROP CONSTRAINT orders_user_fk",
        ] {
            assert!(
                pos(&st, dep) < drop_table,
                "{dep} after DROP TABLE: {:#?}",
                sqls(&st)
            );
        }
        // Indexes, keys, triggers and policies on the dropped table go with it.
        assert_eq!(st.len(), 3, "{:#?}", sqls(&st));
    }

    #[test]
    fn tables_are_created_before_their_keys_views_triggers_and_policies() {
        let target = sample();
        let live = without_table(&target, USERS);
        let st = rollback_sql(&live, &target);
        let create = pos(&st, "CREATE TABLE public.users");
        let pk = pos(&st, "ADD CONSTRAINT users_pkey PRIMARY KEY (id)");
        let fk = pos(
            &st,
            "ALTER TABLE public.orders ADD CONSTRAINT orders_user_fk FOREIGN KEY",
        );
        let idx = pos(&st, "CREATE INDEX users_email_idx");
        let view = pos(
            &st,
            "CREATE VIEW public.user_emails AS SELECT users.email FROM users",
        );
        let trg = pos(&st, "CREATE TRIGGER users_touch");
        let pol = pos(&st, "CREATE POLICY own ON public.users AS PERMISSIVE FOR ALL TO PUBLIC USING ((email = CURRENT_USER))");
        assert!(
            create < idx && idx < pk && pk < fk && fk < view && view < trg && trg < pol,
            "{:#?}",
            sqls(&st)
        );
        assert_eq!(
            st[create].sql,
            "CREATE TABLE public.users (id bigint NOT NULL, email text, \"Full Name\" character varying(20))"
        );
    }

    #[test]
    fn a_table_added_and_a_table_removed_together() {
        let target = sample();
        let mut live = without_table(&target, ORDERS);
        live.insert(table("public", "invoices", &[("id", "bigint")]));
        let st = rollback_sql(&live, &target);
        assert_eq!(
            sqls(&st),
            [
                "DROP TABLE public.invoices",
                "CREATE TABLE public.orders (id bigint, user_id bigint)",
                "ALTER TABLE public.orders ADD CONSTRAINT orders_user_fk FOREIGN KEY (user_id) REFERENCES public.users(id)",
            ]
        );
    }

    #[test]
    fn views_are_rebuilt_around_a_type_change_of_their_table() {
        let target = sample();
        let mut live = target.clone();
        let mut v2 = live.views["\"public\".\"user_emails\""].clone();
        v2.name = "v2".into();
        v2.depends_on = vec!["\"public\".\"user_emails\"".into()];
        v2.definition = " SELECT email FROM user_emails;".into();
        live.insert(v2);
        let target_with_v2 = live.clone();
        live.tables
            .get_mut(USERS)
            .unwrap()
            .columns
            .get_mut("email")
            .unwrap()
            .type_name = "character varying(5)".into();
        let st = rollback_sql(&live, &target_with_v2);
        assert_eq!(
            sqls(&st),
            [
                "DROP VIEW public.v2",
                "DROP VIEW public.user_emails",
                "ALTER TABLE public.orders DROP CONSTRAINT orders_user_fk",
                "ALTER TABLE public.users ALTER COLUMN email TYPE text USING email::text",
                "ALTER TABLE public.orders ADD CONSTRAINT orders_user_fk FOREIGN KEY (user_id) REFERENCES public.users(id)",
                "CREATE VIEW public.user_emails AS SELECT users.email FROM users",
                "CREATE VIEW public.v2 AS SELECT email FROM user_emails",
            ]
        );
        // No base type facts: any type change counts as lossy.
        assert!(st[3].drops_data);
        assert_eq!(
            st[0].note.as_deref(),
            Some("dropped to be re-created from the snapshot")
        );
    }

    #[test]
    fn lossy_type_changes_drop_data() {
        let target = sample();
        let mut live = target.clone();
        let c = live
            .tables
            .get_mut(USERS)
            .unwrap()
            .columns
            .get_mut("Full Name")
            .unwrap();
        c.type_name = "text".into();
        c.base_type = Some("text".into());
        c.typmod = -1;
        let st = rollback_sql(&live, &target);
        let alter = &st[pos(&st, "ALTER COLUMN \"Full Name\" TYPE character varying(20)")];
        assert!(alter.drops_data, "text -> varchar(20) can truncate");
        assert!(rollback_sql(&target, &live).iter().all(|s| !s.drops_data));
    }

    #[test]
    fn fk_to_a_changed_primary_key_is_dropped_first_and_added_back_last() {
        let target = sample();
        let mut live = target.clone();
        live.constraints
            .get_mut("\"users_pkey\" on \"public\".\"users\"")
            .unwrap()
            .definition = "PRIMARY KEY (id, email)".into();
        let st = rollback_sql(&live, &target);
        assert_eq!(
            sqls(&st),
            [
                "ALTER TABLE public.orders DROP CONSTRAINT orders_user_fk",
                "ALTER TABLE public.users DROP CONSTRAINT users_pkey",
                "ALTER TABLE public.users ADD CONSTRAINT users_pkey PRIMARY KEY (id)",
                "ALTER TABLE public.orders ADD CONSTRAINT orders_user_fk FOREIGN KEY (user_id) REFERENCES public.users(id)",
            ]
        );
    }

    #[test]
    fn constraint_validity() {
        let target = sample();
        let mut live = target.clone();
        let fk = live
            .constraints
            .get_mut("\"orders_user_fk\" on \"public\".\"orders\"")
            .unwrap();
        fk.validated = false;
        fk.definition += " NOT VALID";
        let st = rollback_sql(&live, &target);
        assert_eq!(
            sqls(&st),
            ["ALTER TABLE public.orders VALIDATE CONSTRAINT orders_user_fk"]
        );
        let st = rollback_sql(&target, &live);
        assert_eq!(st.len(), 1);
        assert_eq!(st[0].operation, Operation::Note);
    }

    #[test]
    fn quoting_of_awkward_names() {
        let mut target = Schema::default();
        target.insert(Namespace {
            owner: None,
            name: "My Schema".into(),
            comment: Some("it's".into()),
            acl: vec![],
        });
        let mut t = table(
            "My Schema",
            "tab\"le",
            &[("Größe", "integer"), ("select", "text"), ("a b", "text")],
        );
        t.columns.get_mut("a b").unwrap().default = Some("'x'::text".into());
        t.comment = Some("back\\slash".into());
        target.insert(t);
        let st = rollback_sql(&Schema::default(), &target);
        assert_eq!(
            sqls(&st),
            [
                "CREATE SCHEMA \"My Schema\"",
                "CREATE TABLE \"My Schema\".\"tab\"\"le\" (\"Größe\" integer, \"select\" text, \"a b\" text DEFAULT 'x'::text)",
                "COMMENT ON SCHEMA \"My Schema\" IS 'it''s'",
                "COMMENT ON TABLE \"My Schema\".\"tab\"\"le\" IS E'back\\\\slash'",
            ]
        );
        let st = rollback_sql(&target, &Schema::default());
        assert_eq!(
            sqls(&st),
            [
                "DROP TABLE \"My Schema\".\"tab\"\"le\"",
                "DROP SCHEMA \"My Schema\""
            ]
        );
    }

    #[test]
    fn enums_add_back_labels_and_cannot_remove_them() {
        let target = sample();
        let mut live = target.clone();
        live.enums.get_mut("\"public\".\"mood\"").unwrap().labels =
            vec!["ok".into(), "meh's".into()];
        let st = rollback_sql(&live, &target);
        assert_eq!(
            sqls(&st),
            [
                "-- cannot revert: enum public.mood has labels the snapshot does not ('meh''s'); PostgreSQL cannot remove enum labels",
                "ALTER TYPE public.mood ADD VALUE 'sad' BEFORE 'ok'",
            ]
        );
        assert_eq!(st[0].operation, Operation::CannotRevert);
        let mut reordered = target.clone();
        reordered
            .enums
            .get_mut("\"public\".\"mood\"")
            .unwrap()
            .labels = vec!["ok".into(), "sad".into()];
        let st = rollback_sql(&reordered, &target);
        assert_eq!(st.len(), 1);
        assert!(st[0].sql.contains("different order"));
        // Created and dropped enums.
        let st = rollback_sql(&Schema::default(), &target);
        assert!(sqls(&st).contains(&"CREATE TYPE public.mood AS ENUM ('sad', 'ok')"));
        let st = rollback_sql(&target, &Schema::default());
        assert!(sqls(&st).contains(&"DROP TYPE public.mood"));
    }

    #[test]
    fn domains_sequences_functions() {
        let target = sample();
        let mut live = target.clone();
        let d = live.domains.get_mut("\"public\".\"posint\"").unwrap();
        d.not_null = true;
        d.default = Some("1".into());
        d.checks.clear();
        live.sequences
            .get_mut("\"public\".\"counter\"")
            .unwrap()
            .increment = 5;
        let f = live.functions.get_mut("\"public\".\"touch\"()").unwrap();
        f.definition = f.definition.replace("RETURN NEW", "RETURN OLD");
        let st = rollback_sql(&live, &target);
        assert_eq!(
            sqls(&st),
            [
                "ALTER DOMAIN public.posint DROP DEFAULT",
                "ALTER DOMAIN public.posint DROP NOT NULL",
                "ALTER DOMAIN public.posint ADD CONSTRAINT posint_check CHECK (VALUE > 0)",
                "ALTER SEQUENCE public.counter AS bigint INCREMENT BY 1 MINVALUE 1 MAXVALUE 9223372036854775807 START WITH 1 CACHE 1 NO CYCLE",
                "SET LOCAL check_function_bodies = off",
                "CREATE OR REPLACE FUNCTION public.touch()\n RETURNS trigger\n LANGUAGE plpgsql\nAS $function$BEGIN RETURN NEW; END$function$",
            ]
        );
        // A result type change needs DROP + CREATE, after the trigger using it is gone.
        let mut live2 = target.clone();
        live2
            .functions
            .get_mut("\"public\".\"touch\"()")
            .unwrap()
            .result = Some("integer".into());
        let st = rollback_sql(&live2, &target);
        assert!(pos(&st, "DROP FUNCTION public.touch()") < pos(&st, "CREATE OR REPLACE FUNCTION"));
        // Everything from nothing, and back.
        let create = rollback_sql(&Schema::default(), &target);
        for s in [
            "CREATE DOMAIN public.posint AS integer",
            "CREATE SEQUENCE public.counter AS bigint",
            "SELECT pg_catalog.setval('public.counter', 5, true)",
            "CREATE OR REPLACE FUNCTION public.touch()",
        ] {
            pos(&create, s);
        }
        assert!(pos(&create, "CREATE SEQUENCE") < pos(&create, "CREATE TABLE"));
        let drop = rollback_sql(&target, &Schema::default());
        for s in [
            "DROP DOMAIN public.posint",
            "DROP SEQUENCE public.counter",
            "DROP FUNCTION public.touch()",
        ] {
            pos(&drop, s);
        }
        assert!(pos(&drop, "DROP TABLE public.users") < pos(&drop, "DROP DOMAIN"));
        assert!(pos(&drop, "DROP TABLE public.users") < pos(&drop, "DROP FUNCTION"));
        assert!(drop[pos(&drop, "DROP SEQUENCE")].drops_data);
        assert!(drop.last().unwrap().sql == "DROP SCHEMA public");
    }

    #[test]
    fn owned_sequences_go_with_their_column() {
        let mut target = sample();
        let seq_key = "\"public\".\"counter\"";
        target.sequences.get_mut(seq_key).unwrap().owned_by =
            Some("\"public\".\"orders\".\"id\"".into());
        let live = without_table(&target, ORDERS);
        // The live schema without orders also lacks... nothing else: the sequence stays
        // but loses its owner; rolling back re-creates orders and re-owns it.
        let mut live = live;
        live.sequences.get_mut(seq_key).unwrap().owned_by = None;
        let st = rollback_sql(&live, &target);
        assert!(
            pos(&st, "CREATE TABLE public.orders")
                < pos(
                    &st,
                    "ALTER SEQUENCE public.counter OWNED BY public.orders.id"
                )
        );
        // Dropping the owning table takes the sequence along: no DROP SEQUENCE.
        let mut gone = without_table(&target, ORDERS);
        gone.sequences.clear();
        let st = rollback_sql(&target, &gone);
        assert!(
            !st.iter().any(|s| s.sql.starts_with("DROP SEQUENCE")),
            "{:#?}",
            sqls(&st)
        );
    }

    #[test]
    fn columns_alterations() {
        let target = sample();
        let mut live = target.clone();
        let cols = &mut live.tables.get_mut(USERS).unwrap().columns;
        let id = cols.get_mut("id").unwrap();
        id.not_null = false;
        id.default = Some("0".into());
        let email = cols.get_mut("email").unwrap();
        email.identity = None;
        email.not_null = true;
        let mut tgt = target.clone();
        let tid = tgt
            .tables
            .get_mut(USERS)
            .unwrap()
            .columns
            .get_mut("id")
            .unwrap();
        tid.identity = Some(IdentityKind::Always);
        let st = rollback_sql(&live, &tgt);
        assert_eq!(
            sqls(&st),
            [
                "ALTER TABLE public.users ALTER COLUMN id DROP DEFAULT",
                "ALTER TABLE public.users ALTER COLUMN id SET NOT NULL",
                "ALTER TABLE public.users ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY",
                "ALTER TABLE public.users ALTER COLUMN email DROP NOT NULL",
            ]
        );
        // Generated columns: dropping the expression is possible, adding it back is not.
        let mut gen = target.clone();
        gen.tables
            .get_mut(USERS)
            .unwrap()
            .columns
            .get_mut("email")
            .unwrap()
            .generated = Some("'x'".into());
        let st = rollback_sql(&gen, &target);
        assert_eq!(
            sqls(&st),
            ["ALTER TABLE public.users ALTER COLUMN email DROP EXPRESSION"]
        );
        let st = rollback_sql(&target, &gen);
        assert_eq!(
            st.iter()
                .filter(|s| s.operation == Operation::CannotRevert)
                .count(),
            1,
            "{:#?}",
            sqls(&st)
        );
    }

    #[test]
    fn table_flags_inheritance_and_partitions() {
        let mut target = sample();
        let mut part = table("public", "m", &[("k", "integer")]);
        part.partition_key = Some("LIST (k)".into());
        target.insert(part);
        let mut p1 = table("public", "m1", &[("k", "integer")]);
        p1.columns.get_mut("k").unwrap().local = false;
        p1.inherits = vec!["\"public\".\"m\"".into()];
        p1.partition_bound = Some("FOR VALUES IN (1)".into());
        target.insert(p1);
        let t = target.tables.get_mut(USERS).unwrap();
        t.rls_enabled = true;
        t.rls_forced = true;
        t.persistence = Persistence::Unlogged;
        let st = rollback_sql(&Schema::default(), &target);
        let parent = pos(
            &st,
            "CREATE TABLE public.m (k integer) PARTITION BY LIST (k)",
        );
        let child = pos(
            &st,
            "CREATE TABLE public.m1 PARTITION OF public.m FOR VALUES IN (1)",
        );
        assert!(parent < child);
        pos(&st, "CREATE UNLOGGED TABLE public.users");
        pos(&st, "ALTER TABLE public.users ENABLE ROW LEVEL SECURITY");
        pos(&st, "ALTER TABLE public.users FORCE ROW LEVEL SECURITY");
        let st = rollback_sql(&target, &Schema::default());
        let exact = |sql: &str| st.iter().position(|s| s.sql == sql).unwrap();
        assert!(exact("DROP TABLE public.m1") < exact("DROP TABLE public.m"));
        // Kept tables: flags flip back, a detached partition is re-attached.
        let mut live = target.clone();
        let u = live.tables.get_mut(USERS).unwrap();
        u.rls_enabled = false;
        u.rls_forced = false;
        u.persistence = Persistence::Permanent;
        let m1 = live.tables.get_mut("\"public\".\"m1\"").unwrap();
        m1.inherits.clear();
        m1.partition_bound = None;
        let st = rollback_sql(&live, &target);
        assert_eq!(
            sqls(&st),
            [
                "ALTER TABLE public.m ATTACH PARTITION public.m1 FOR VALUES IN (1)",
                "ALTER TABLE public.users SET UNLOGGED",
                "ALTER TABLE public.users ENABLE ROW LEVEL SECURITY",
                "ALTER TABLE public.users FORCE ROW LEVEL SECURITY",
            ]
        );
        let st = rollback_sql(&target, &live);
        assert!(sqls(&st).contains(&"ALTER TABLE public.m DETACH PARTITION public.m1"));
        let mut repart = target.clone();
        repart
            .tables
            .get_mut("\"public\".\"m\"")
            .unwrap()
            .partition_key = Some("RANGE (k)".into());
        assert_eq!(
            rollback_sql(&repart, &target)[0].operation,
            Operation::CannotRevert
        );
    }

    #[test]
    fn triggers_policies_indexes_and_matviews() {
        let target = sample();
        let mut live = target.clone();
        live.triggers
            .get_mut("\"users_touch\" on \"public\".\"users\"")
            .unwrap()
            .enabled = "D".into();
        live.policies
            .get_mut("\"own\" on \"public\".\"users\"")
            .unwrap()
            .roles = vec!["Admin".into()];
        live.indexes
            .get_mut("\"public\".\"users_email_idx\"")
            .unwrap()
            .valid = false;
        let st = rollback_sql(&live, &target);
        assert_eq!(
            sqls(&st),
            [
                "DROP POLICY own ON public.users",
                "DROP INDEX public.users_email_idx",
                "CREATE INDEX users_email_idx ON public.users USING btree (email)",
                "ALTER TABLE public.users ENABLE TRIGGER users_touch",
                "CREATE POLICY own ON public.users AS PERMISSIVE FOR ALL TO PUBLIC USING ((email = CURRENT_USER))",
            ]
        );
        let st = rollback_sql(&target, &live);
        pos(&st, "ALTER TABLE public.users DISABLE TRIGGER users_touch");
        pos(&st, "TO \"Admin\"");
        // A materialized view with an index: index after the view; dropping it loses data.
        let mut mv_target = target.clone();
        let mut mv = target.views["\"public\".\"user_emails\""].clone();
        mv.name = "mv".into();
        mv.materialized = true;
        mv_target.insert(mv);
        mv_target.insert(Index {
            schema: "public".into(),
            name: "mv_idx".into(),
            table: identity(&["public", "mv"]),
            definition: "CREATE INDEX mv_idx ON public.mv USING btree (email)".into(),
            valid: true,
            unique: false,
            constraint: false,
            inherited: false,
            comment: None,
        });
        let st = rollback_sql(&target, &mv_target);
        assert_eq!(
            sqls(&st),
            [
                "CREATE MATERIALIZED VIEW public.mv AS SELECT users.email FROM users WITH DATA",
                "CREATE INDEX mv_idx ON public.mv USING btree (email)",
            ]
        );
        let st = rollback_sql(&mv_target, &target);
        assert_eq!(sqls(&st), ["DROP MATERIALIZED VIEW public.mv"]);
        assert!(st[0].drops_data);
    }

    #[test]
    fn comments_and_privileges() {
        let target = {
            let mut s = sample();
            let u = s.tables.get_mut(USERS).unwrap();
            u.acl = vec![
                "alice=arwdDxt/alice".into(),
                "bob=r*w/alice".into(),
                "\"Odd \"\"Role\"\"\"=r/alice".into(),
            ];
            u.columns.get_mut("email").unwrap().acl = vec!["carol=r/alice".into()];
            u.columns.get_mut("email").unwrap().comment = Some("mail".into());
            s.functions.get_mut("\"public\".\"touch\"()").unwrap().acl =
                vec!["alice=X/alice".into()];
            s
        };
        let mut live = target.clone();
        let u = live.tables.get_mut(USERS).unwrap();
        u.acl = vec![
            "alice=arwdDxt/alice".into(),
            "bob=rd/alice".into(),
            "=r/alice".into(),
        ];
        u.columns.get_mut("email").unwrap().acl.clear();
        u.columns.get_mut("email").unwrap().comment = None;
        live.functions
            .get_mut("\"public\".\"touch\"()")
            .unwrap()
            .acl = vec!["alice=X/alice".into(), "=X/alice".into()];
        let st = rollback_sql(&live, &target);
        assert_eq!(
            sqls(&st),
            [
                "COMMENT ON COLUMN public.users.email IS 'mail'",
                "REVOKE EXECUTE ON FUNCTION public.touch() FROM PUBLIC",
                "REVOKE SELECT ON TABLE public.users FROM PUBLIC",
                "GRANT SELECT ON TABLE public.users TO \"Odd \"\"Role\"\"\"",
                "REVOKE DELETE ON TABLE public.users FROM bob",
                "GRANT UPDATE ON TABLE public.users TO bob",
                "GRANT SELECT ON TABLE public.users TO bob WITH GRANT OPTION",
                "GRANT SELECT (email) ON TABLE public.users TO carol",
            ]
        );
        assert_eq!(st[0].identity, "column \"public\".\"users\".\"email\"");
        assert_eq!(st[2].kind, ObjectKind::Privileges);
        // A re-created function gets PUBLIC's default EXECUTE revoked when the snapshot had none.
        let st = rollback_sql(&Schema::default(), &target);
        pos(&st, "REVOKE EXECUTE ON FUNCTION public.touch() FROM PUBLIC");
        // Unparseable ACL items are reported, not guessed.
        let mut bad = target.clone();
        bad.schemas.get_mut("\"public\"").unwrap().acl = vec!["nonsense".into()];
        let st = rollback_sql(&target, &bad);
        assert_eq!(st[0].operation, Operation::CannotRevert);
    }

    #[test]
    fn acl_items_parse() {
        assert_eq!(
            parse_acl_item("\"a \"\"b\"\"\"=r*X/\"G r\"").unwrap(),
            AclItem {
                grantee: "a \"b\"".into(),
                privileges: vec![('r', true), ('X', false)],
                grantor: "G r".into()
            }
        );
        assert_eq!(parse_acl_item("=U/postgres").unwrap().grantee, "");
        assert!(parse_acl_item("x=Q/y").is_none());
        assert!(parse_acl_item("x=r").is_none());
        assert!(parse_acl_item("x=r/y/z").is_none());
    }

    #[test]
    fn statements_serialize_for_the_sql_layer() {
        let target = sample();
        let mut live = target.clone();
        live.tables
            .get_mut(USERS)
            .unwrap()
            .columns
            .insert("x".into(), Column::new("x", 9, "int"));
        let v = serde_json::to_value(rollback_sql(&live, &target)).unwrap();
        assert_eq!(v[0]["operation"], "drop");
        assert_eq!(v[0]["kind"], "column");
        assert_eq!(v[0]["drops"]["kind"], "column");
        assert_eq!(v[0]["drops"]["table"], USERS);
        assert_eq!(v[0]["drops"]["column"], "x");
        let script = to_script(&rollback_sql(&live, &target));
        assert_eq!(script, "ALTER TABLE public.users DROP COLUMN x;\n");
    }

    /// A tiny deterministic generator (no rand crate): mutations of the sample.
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self, n: usize) -> usize {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((self.0 >> 33) as usize) % n
        }
    }

    fn mutate(s: &mut Schema, rng: &mut Lcg, i: usize) {
        let names = ["a", "B b", "c\"", "dé"];
        let name = format!("{}{i}", names[rng.next(names.len())]);
        match rng.next(12) {
            0 => s.insert(table("public", &name, &[("id", "integer"), ("v", "text")])),
            1 => {
                if let Some(k) = s
                    .tables
                    .keys()
                    .nth(rng.next(s.tables.len().max(1)))
                    .cloned()
                {
                    *s = without_table(s, &k);
                }
            }
            2 | 3 => {
                if let Some(t) = {
                    let n = rng.next(s.tables.len().max(1));
                    s.tables.values_mut().nth(n)
                } {
                    let p = t.columns.values().map(|c| c.position).max().unwrap_or(0) + 1;
                    t.columns
                        .insert(name.clone(), Column::new(&name, p, "bigint"));
                }
            }
            4 => {
                let key = s
                    .tables
                    .keys()
                    .nth(rng.next(s.tables.len().max(1)))
                    .cloned();
                if let Some(k) = key {
                    let dependent = s.views.values().any(|v| v.depends_on.contains(&k));
                    let t = s.tables.get_mut(&k).unwrap();
                    if let (false, Some(c)) = (dependent, {
                        let n = rng.next(t.columns.len().max(1));
                        t.columns.keys().nth(n).cloned()
                    }) {
                        if c != "id" {
                            t.columns.remove(&c);
                        }
                    }
                }
            }
            5 => {
                if let Some(t) = {
                    let n = rng.next(s.tables.len().max(1));
                    s.tables.values_mut().nth(n)
                } {
                    if let Some(c) = {
                        let n = rng.next(t.columns.len().max(1));
                        t.columns.values_mut().nth(n)
                    } {
                        c.type_name = if c.type_name == "text" {
                            "character varying(9)".into()
                        } else {
                            "text".into()
                        };
                    }
                }
            }
            6 => {
                if let Some(t) = {
                    let n = rng.next(s.tables.len().max(1));
                    s.tables.values_mut().nth(n)
                } {
                    t.comment = Some(format!("c{i}"));
                    t.acl = vec![format!("r{i}=r/owner")];
                }
            }
            7 => {
                if let Some(k) = s
                    .tables
                    .keys()
                    .nth(rng.next(s.tables.len().max(1)))
                    .cloned()
                {
                    let t = &s.tables[&k];
                    s.insert(View {
                        owner: None,
                        schema: "public".into(),
                        name: format!("v {name}"),
                        materialized: rng.next(2) == 0,
                        definition: format!(" SELECT 1 FROM {};", ddl_name(&k)),
                        depends_on: vec![t.key()],
                        has_data: None,
                        comment: None,
                        acl: vec![],
                    });
                }
            }
            8 => {
                if let Some(k) = s
                    .tables
                    .keys()
                    .nth(rng.next(s.tables.len().max(1)))
                    .cloned()
                {
                    s.insert(Index {
                        schema: "public".into(),
                        name: format!("i {name}"),
                        table: k.clone(),
                        definition: format!(
                            "CREATE INDEX \"i {name}\" ON {} USING btree (id)",
                            ddl_name(&k)
                        ),
                        valid: true,
                        unique: rng.next(2) == 0,
                        constraint: false,
                        inherited: false,
                        comment: None,
                    });
                }
            }
            9 => s.insert(EnumType {
                owner: None,
                schema: "public".into(),
                name: format!("e {name}"),
                labels: vec!["x".into(), name.clone()],
                comment: None,
                acl: vec![],
            }),
            10 => {
                if let Some(e) = s.enums.values_mut().next() {
                    e.labels.insert(0, name);
                }
            }
            _ => {
                if let Some(k) = s
                    .tables
                    .keys()
                    .nth(rng.next(s.tables.len().max(1)))
                    .cloned()
                {
                    s.insert(Constraint {
                        table: k.clone(),
                        name: format!("ck {name}"),
                        kind: ConstraintKind::Check,
                        definition: "CHECK (id > 0)".into(),
                        validated: true,
                        deferrable: false,
                        deferred: false,
                        references: None,
                        local: true,
                        comment: None,
                    });
                }
            }
        }
    }

    #[test]
    fn generated_pairs_every_difference_is_addressed() {
        let mut rng = Lcg(42);
        for round in 0..300 {
            let mut target = sample();
            for i in 0..rng.next(3) {
                mutate(&mut target, &mut rng, 100 + i);
            }
            let mut live = target.clone();
            for i in 0..1 + rng.next(4) {
                mutate(&mut live, &mut rng, i);
            }
            assert!(diff(&target, &target).is_empty());
            assert!(rollback_sql(&live, &live).is_empty());
            assert!(rollback_sql(&target, &target).is_empty());
            let changes = diff(&target, &live);
            let st = rollback_sql(&live, &target);
            assert_eq!(
                changes.is_empty(),
                st.is_empty(),
                "round {round}: {changes:#?} {:#?}",
                sqls(&st)
            );
            for c in &changes {
                // Addressed by a statement on it, or it was on a relation that is dropped.
                // A column added at the attribute number of a removed one of the same
                // type is renamed back (the RENAME's identity is the target's name).
                let renamed_back = c.kind == ObjectKind::Column
                    && c.action == Action::Removed
                    && st
                        .iter()
                        .any(|s| s.identity == c.identity && s.sql.contains(" RENAME COLUMN "));
                let renamed = renamed_back
                    || c.kind == ObjectKind::Column
                        && c.action == Action::Added
                        && st.iter().any(|s| {
                            s.sql.contains(" RENAME COLUMN ")
                                && c.after
                                    .get("name")
                                    .and_then(|n| n.as_str())
                                    .is_some_and(|n| {
                                        s.sql.contains(&format!(
                                            "RENAME COLUMN {} TO",
                                            quote_ident(n)
                                        ))
                                    })
                        });
                let covered = renamed
                    || st.iter().any(|s| {
                        s.identity == c.identity
                            || (s.operation == Operation::Drop
                                && c.after.get("table").and_then(|t| t.as_str())
                                    == Some(s.identity.as_str()))
                    });
                assert!(
                    covered,
                    "round {round}: {c:#?} not addressed by {:#?}",
                    sqls(&st)
                );
                // The inverse of an addition is a drop, of a removal a creation.
                let ops: Vec<Operation> = st
                    .iter()
                    .filter(|s| s.identity == c.identity && s.kind == c.kind)
                    .map(|s| s.operation)
                    .collect();
                match c.action {
                    _ if renamed => {}
                    Action::Added if !ops.is_empty() => assert!(
                        ops.contains(&Operation::Drop),
                        "round {round}: {c:#?} {ops:?}"
                    ),
                    Action::Removed if !ops.is_empty() => assert!(
                        ops.contains(&Operation::Create),
                        "round {round}: {c:#?} {ops:?}"
                    ),
                    _ => {}
                }
            }
            // Every identifier in the generated SQL is balanced in its quotes.
            for s in st.iter().filter(|s| s.is_executable()) {
                assert_eq!(s.sql.matches('"').count() % 2, 0, "{}", s.sql);
            }
        }
    }

    #[test]
    fn topo_orders_dependencies_first_and_survives_long_chains() {
        let keys: BTreeSet<String> = ["a", "b", "c", "d"].iter().map(|s| s.to_string()).collect();
        let deps = |k: &str| -> Vec<String> {
            match k {
                "a" => vec!["c".into(), "x".into()],
                "c" => vec!["d".into()],
                "d" => vec!["a".into()], // a cycle, broken where found
                _ => vec![],
            }
        };
        assert_eq!(topo(&keys, &deps), vec!["d", "c", "a", "b"]);
        // 200,000 views, each on the next: no recursion, no stack overflow.
        let n = 200_000;
        let keys: BTreeSet<String> = (0..n).map(|i| format!("v{i:06}")).collect();
        let chain = |k: &str| -> Vec<String> {
            let i: usize = k[1..].parse().unwrap();
            if i + 1 < n {
                vec![format!("v{:06}", i + 1)]
            } else {
                vec![]
            }
        };
        let order = topo(&keys, &chain);
        assert_eq!(order.len(), n);
        assert_eq!(order[0], format!("v{:06}", n - 1));
        assert_eq!(order[n - 1], "v000000");
    }

    #[test]
    fn statements_run_as_the_owner_of_what_they_touch() {
        let live = sample();
        let mut target = without_table(&sample(), ORDERS);
        let mut live = live;
        for t in live.tables.values_mut() {
            t.owner = Some("app".into());
        }
        for t in target.tables.values_mut() {
            t.owner = Some("app".into());
        }
        // The live orders table (dropped by the rollback) and a column of users.
        let plan = with_owners(rollback_sql(&live, &target), &live, &target, &|_| true);
        assert!(
            plan.iter()
                .filter(|s| s.is_executable())
                .all(|s| s.owner.as_deref() == Some("app")),
            "{plan:#?}"
        );
        // Re-created from a snapshot with owners: as that owner.
        let mut owned = sample();
        for t in owned.tables.values_mut() {
            t.owner = Some("reports".into());
        }
        let bare = without_table(&owned, ORDERS);
        let plan = with_owners(rollback_sql(&bare, &owned), &bare, &owned, &|_| true);
        let create = plan
            .iter()
            .find(|s| s.operation == Operation::Create && s.kind == ObjectKind::Table)
            .unwrap();
        assert_eq!(create.owner.as_deref(), Some("reports"));
        // Its owner dropped since: cannot revert, naming the role.
        let plan = with_owners(rollback_sql(&bare, &owned), &bare, &owned, &|r| {
            r != "reports"
        });
        let item = plan.iter().find(|s| s.identity == ORDERS).unwrap();
        assert_eq!(item.operation, Operation::CannotRevert);
        assert!(!item.is_executable() && item.owner.is_none());
        assert!(
            item.note
                .as_deref()
                .unwrap()
                .starts_with("its owner reports no longer exists: re-create it"),
            "{item:?}"
        );
        // From a snapshot without owners: cannot revert, with the statement in the note.
        let plan = with_owners(rollback_sql(&bare, &sample()), &bare, &sample(), &|_| true);
        let item = plan.iter().find(|s| s.identity == ORDERS).unwrap();
        assert_eq!(item.operation, Operation::CannotRevert);
        assert!(
            item.note
                .as_deref()
                .unwrap()
                .contains("CREATE TABLE public.orders"),
            "{item:?}"
        );
        assert!(!item.is_executable());
    }
}
