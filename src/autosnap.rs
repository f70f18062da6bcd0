//! Automatic snapshots: before each DDL statement of a migration, the state of what
//! the statement can reach — read only if no earlier statement of the same migration
//! (top-level transaction) already covered it. The parts make one snapshot, stored
//! when the migration commits (`migsafe._snapshot_store()`); the audit log's migration
//! row points to it.
//!
//! What a statement reaches is read from its parse tree, names resolved through
//! search_path as the server resolves them. Statements whose reach is not known
//! exactly (CASCADE drops, unknown DDL, unqualified functions outside CREATE) take a
//! full snapshot part instead, so the snapshot is never missing anything.
//!
//! No trace in the user's session: a part is read in a subtransaction that is rolled
//! back (the locks the read takes — deparsing a view locks what it reads — are let go
//! at once, so they neither show in `pg_locks` nor hold up, or deadlock with, other
//! sessions' DDL later in the migration), kept in memory, and written at commit or
//! PREPARE; its id comes from a counter in shared memory, not a sequence, so
//! `lastval()` stays the user's. A read that meets a concurrent DDL (a relation
//! dropped between the catalog scan and its deparse, or a deadlock it lost) is read
//! again. In a transaction that cannot write (READ ONLY, a standby), nothing is read.

use crate::engine::schema::scope::Scope;
use crate::guc;
use crate::pgutil::{cstr, relid_of};
use crate::spi::{self, As};
use pgrx::pg_sys::{self, NodeTag, ObjectType, Oid};
use pgrx::PgList;
use std::cell::RefCell;

/// What a statement reaches.
pub enum Reach {
    /// Nothing the schema model holds.
    Nothing,
    Part(Scope),
    Everything,
}

struct Part {
    /// The subtransaction that read it: gone if that one rolls back.
    sub: pg_sys::SubTransactionId,
    /// None: everything.
    scope: Option<Scope>,
    /// The catalog document (`migsafe._catalog()`), as JSON text.
    doc: String,
}

#[derive(Default)]
struct State {
    /// The snapshot's id and when its first part was read (Unix µs).
    snapshot: Option<(i64, i64)>,
    parts: Vec<Part>,
    /// Written (at pre-commit): the id it got.
    stored: Option<i64>,
}

thread_local! {
    static STATE: RefCell<State> = RefCell::new(State::default());
}

/// How often a part is read again after an object vanished under it.
const READ_ATTEMPTS: u32 = 10;

/// How long a part's read gives way to concurrent DDL before it waits like any
/// statement (see `read_doc`).
const GIVE_WAY_US: i64 = 3_000_000;

/// How a concurrent DDL got in a read's way.
enum Conflict {
    /// A lock wait that ran out (or a deadlock the read lost).
    LockWait,
    /// An object dropped between the catalog scan and its deparse.
    Vanished,
}

/// The transaction callback's part (called by `hooks`, first): store the snapshot
/// before commit, forget it after.
pub(crate) unsafe fn on_xact(event: pg_sys::XactEvent::Type) {
    use pg_sys::XactEvent::*;
    match event {
        XACT_EVENT_PRE_COMMIT | XACT_EVENT_PRE_PREPARE
            if STATE
                .try_with(|s| s.borrow().stored.is_none() && !s.borrow().parts.is_empty())
                .unwrap_or(false) =>
        {
            store_guarded();
        }
        XACT_EVENT_COMMIT | XACT_EVENT_ABORT | XACT_EVENT_PREPARE => {
            let _ = STATE.try_with(|s| *s.borrow_mut() = State::default());
        }
        _ => {}
    }
}

/// A user's subtransaction rolled back (called by `hooks`): forget the parts it read.
pub(crate) fn on_subxact_abort(my_subid: pg_sys::SubTransactionId) {
    let _ = STATE.try_with(|s| {
        let mut s = s.borrow_mut();
        s.parts.retain(|p| p.sub < my_subid);
        if s.parts.is_empty() {
            // Its id stays unused: a gap, as a sequence leaves one.
            *s = State::default();
        }
    });
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn store_guarded() {
    store();
}

/// Writes the migration's snapshot (at commit or PREPARE; the audit log's end record
/// asks for it first, to know its id). Does nothing the second time.
pub fn store() {
    let pending = STATE.with(|s| {
        let s = s.borrow();
        if s.stored.is_some() || s.parts.is_empty() {
            return None;
        }
        let (id, taken_us) = s.snapshot?;
        let scopes: Vec<Option<String>> = s
            .parts
            .iter()
            .map(|p| p.scope.as_ref().map(|sc| sc.to_json()))
            .collect();
        let docs: Vec<String> = s.parts.iter().map(|p| p.doc.clone()).collect();
        Some((id, taken_us, scopes, docs))
    });
    let Some((id, taken_us, scopes, docs)) = pending else {
        return;
    };
    let stored = spi::call::<i64>(
        As::Superuser,
        "SELECT migsafe._snapshot_store($1, pg_catalog.to_timestamp($2), \
                $3::pg_catalog.jsonb[], $4::pg_catalog.jsonb[])",
        &[
            id.into(),
            (taken_us as f64 / 1e6).into(),
            scopes.into(),
            docs.into(),
        ],
    )
    .unwrap_or(id);
    if stored != id {
        crate::audit::queue::snapshot_id_used(unsafe { pg_sys::MyDatabaseId }, stored);
    }
    STATE.with(|s| s.borrow_mut().stored = Some(stored));
}

/// The automatic snapshot of the running migration, if one was taken.
pub fn current() -> Option<i64> {
    STATE
        .try_with(|s| {
            let s = s.borrow();
            s.stored
                .or_else(|| s.snapshot.filter(|_| !s.parts.is_empty()).map(|(id, _)| id))
        })
        .ok()
        .flatten()
}

fn snapshots_installed() -> bool {
    unsafe {
        let nsp = pg_sys::get_namespace_oid(c"migsafe".as_ptr(), true);
        nsp != pg_sys::InvalidOid
            && pg_sys::get_relname_relid(c"snapshot_part".as_ptr(), nsp) != pg_sys::InvalidOid
            && pg_sys::get_relname_relid(c"snapshot".as_ptr(), nsp) != pg_sys::InvalidOid
    }
}

/// Does the database's extension SQL store snapshots at commit (0.3.0 on)? A database
/// still on an earlier release's SQL (until its ALTER EXTENSION UPDATE) has only
/// `_snapshot_part`, which writes each part inside the transaction as it is read.
fn stores_at_commit() -> bool {
    unsafe {
        let mut names = PgList::<pg_sys::Node>::new();
        names.push(pg_sys::makeString(pg_sys::pstrdup(c"migsafe".as_ptr())) as *mut pg_sys::Node);
        names.push(
            pg_sys::makeString(pg_sys::pstrdup(c"_snapshot_store".as_ptr())) as *mut pg_sys::Node,
        );
        let args = [
            pg_sys::INT8OID,
            pg_sys::TIMESTAMPTZOID,
            pg_sys::JSONBARRAYOID,
            pg_sys::JSONBARRAYOID,
        ];
        pg_sys::LookupFuncName(names.into_pg(), 4, args.as_ptr(), true) != pg_sys::InvalidOid
    }
}

/// Is an error of a part's read one a concurrent DDL causes (read again)?
fn concurrent_ddl(e: &pgrx::pg_sys::panic::CaughtError) -> Option<Conflict> {
    use pgrx::pg_sys::panic::CaughtError::*;
    use pgrx::PgSqlErrorCode::*;
    let r = match e {
        PostgresError(r) | ErrorReport(r) => r,
        RustPanic { .. } => return None,
    };
    match r.sql_error_code() {
        ERRCODE_LOCK_NOT_AVAILABLE | ERRCODE_T_R_DEADLOCK_DETECTED => Some(Conflict::LockWait),
        ERRCODE_UNDEFINED_TABLE | ERRCODE_UNDEFINED_OBJECT | ERRCODE_UNDEFINED_FUNCTION => {
            Some(Conflict::Vanished)
        }
        ERRCODE_INTERNAL_ERROR => {
            let m = r.message();
            (m.starts_with("could not open relation") || m.starts_with("cache lookup failed"))
                .then_some(Conflict::Vanished)
        }
        _ => None,
    }
}

/// Reads a part's catalog document, leaving nothing in the user's transaction (see
/// the module documentation). Deparsing a view locks the relations it reads, so a read
/// can meet concurrent DDL: a lock held by another migration, a relation dropped
/// between the catalog scan and its deparse.
///
/// For its first `GIVE_WAY_US`, each attempt waits for a lock at most a hundredth of
/// `deadlock_timeout` (10 ms at most), then lets go of everything it took and tries
/// again: a read that would close a cycle of waits gives way instead of being caught
/// in it by another session's deadlock check, so that session's DDL goes on instead of
/// failing. After that, the read waits as the
/// statement itself would (its own `lock_timeout`, PostgreSQL's deadlock detection):
/// a cycle through locks the statement already held would otherwise never be found.
/// Each attempt has a snapshot of its own (a fresh one in READ COMMITTED), so an object
/// a concurrent DDL dropped meanwhile is gone from the next attempt; such a vanished
/// object is retried `READ_ATTEMPTS` times.
fn read_doc(scope: Option<String>) -> String {
    let started = crate::pgutil::now_unix_us();
    let user_timeout_ms = unsafe { pg_sys::LockTimeout };
    // Barely waiting: a read caught waiting in a cycle by another session's deadlock
    // check would make that session's DDL fail.
    let mut short_ms = (unsafe { pg_sys::DeadlockTimeout } / 100).clamp(1, 10);
    if user_timeout_ms > 0 {
        short_ms = short_ms.min(user_timeout_ms);
    }
    let short = std::ffi::CString::new(format!("{short_ms}ms")).expect("no NUL");
    let mut vanished = 0;
    let mut attempt: i64 = 0;
    loop {
        attempt += 1;
        let giving_way = crate::pgutil::now_unix_us() - started < GIVE_WAY_US;
        let arg = scope.clone();
        let r = spi::rolled_back(|| {
            if giving_way {
                // Local to the subtransaction: gone with its rollback.
                spi::set_local(c"lock_timeout", &short);
            }
            // A snapshot of its own for each attempt; the rollback pops it should the
            // read fail.
            unsafe { pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot()) };
            let doc = spi::one::<String>(
                As::Superuser,
                "SELECT migsafe._catalog($1::pg_catalog.jsonb)::pg_catalog.text",
                &[arg.into()],
            );
            unsafe { pg_sys::PopActiveSnapshot() };
            doc
        });
        let e = match r {
            Ok(doc) => return doc.unwrap_or_else(|| "{}".into()),
            Err(e) => e,
        };
        let retry = match concurrent_ddl(&e) {
            Some(Conflict::LockWait) => giving_way,
            Some(Conflict::Vanished) => {
                vanished += 1;
                vanished < READ_ATTEMPTS
            }
            None => false,
        };
        if !retry {
            e.rethrow();
        }
        pgrx::check_for_interrupts!();
        unsafe { pg_sys::pg_usleep((5_000 * attempt).min(100_000) as std::ffi::c_long) };
    }
}

/// Before a DDL statement runs: snapshot what it reaches that this migration has not
/// covered yet.
///
/// # Safety
/// `stmt` is the statement's utility node; call inside a transaction.
pub unsafe fn before(stmt: *mut pg_sys::Node) {
    // Statements that cannot run in a transaction block (CONCURRENTLY) must be their
    // transaction's first action: nothing may be written before them.
    if !guc::AUTO_SNAPSHOT.get()
        || !pg_sys::IsTransactionState()
        || !crate::pgutil::transaction_writable()
        || crate::snapshot::not_in_transaction(stmt).is_some()
    {
        return;
    }
    // A full part covers everything the migration can still do: nothing to work out.
    if STATE.with(|s| s.borrow().parts.iter().any(|p| p.scope.is_none())) {
        return;
    }
    let reach = reach(stmt);
    if matches!(reach, Reach::Nothing) || !snapshots_installed() {
        return;
    }
    let missing = STATE.with(|s| {
        let s = s.borrow();
        let mut have = Scope::default();
        for p in &s.parts {
            have.extend(p.scope.as_ref().expect("no full part: checked above"));
        }
        match &reach {
            Reach::Everything => Some(None),
            Reach::Part(want) => have.missing(want).map(Some),
            Reach::Nothing => None,
        }
    });
    let Some(scope) = missing else {
        return;
    };
    if !stores_at_commit() {
        // An earlier release's SQL: its own way, as that release did.
        let sid = STATE.with(|s| s.borrow().snapshot.map(|(id, _)| id));
        let arg = scope
            .as_ref()
            .map(|s| pgrx::JsonB(serde_json::from_str(&s.to_json()).expect("a scope is JSON")));
        let id = spi::call::<i64>(
            As::Superuser,
            "SELECT migsafe._snapshot_part($1, $2)",
            &[sid.into(), arg.into()],
        );
        let sub = pg_sys::GetCurrentSubTransactionId();
        STATE.with(|s| {
            let mut s = s.borrow_mut();
            if s.snapshot.is_none() {
                s.snapshot = id.map(|i| (i, 0));
            }
            // Written already: nothing to store at commit.
            s.stored = s.snapshot.map(|(id, _)| id);
            s.parts.push(Part {
                sub,
                scope,
                doc: String::new(),
            });
        });
        return;
    }
    let doc = read_doc(scope.as_ref().map(|s| s.to_json()));
    let need_id = STATE.with(|s| s.borrow().snapshot.is_none());
    let id = need_id.then(crate::snapshot::next_snapshot_id);
    let sub = pg_sys::GetCurrentSubTransactionId();
    STATE.with(|s| {
        let mut s = s.borrow_mut();
        if let Some(id) = id {
            s.snapshot = Some((id, crate::pgutil::now_unix_us()));
        }
        s.parts.push(Part { sub, scope, doc });
    });
}

fn part() -> Scope {
    Scope::default()
}

unsafe fn nsp_name(oid: Oid) -> Option<String> {
    cstr(pg_sys::get_namespace_name(oid))
}

/// (schema, name) of a RangeVar: its own schema, the schema of the relation it finds
/// through search_path, or the schema CREATE would use.
unsafe fn rv_key(rv: *mut pg_sys::RangeVar, creating: bool) -> Option<(String, String)> {
    if rv.is_null() {
        return None;
    }
    let name = cstr((*rv).relname)?;
    if let Some(s) = cstr((*rv).schemaname) {
        return Some((s, name));
    }
    if (*rv).relpersistence == pg_sys::RELPERSISTENCE_TEMP as c_char {
        return None;
    }
    let oid = relid_of(rv);
    if oid != pg_sys::InvalidOid {
        return Some((nsp_name(pg_sys::get_rel_namespace(oid))?, name));
    }
    if creating {
        let nsp = pg_sys::RangeVarGetCreationNamespace(rv);
        return Some((nsp_name(nsp)?, name));
    }
    None
}

use std::ffi::c_char;

/// (schema, name) of a relation oid.
unsafe fn rel_key(oid: Oid) -> Option<(String, String)> {
    if oid == pg_sys::InvalidOid {
        return None;
    }
    Some((
        nsp_name(pg_sys::get_rel_namespace(oid))?,
        cstr(pg_sys::get_rel_name(oid))?,
    ))
}

unsafe fn strval(n: *mut pg_sys::Node) -> Option<String> {
    crate::pgutil::string_node(n)
}

fn names(l: *mut pg_sys::List) -> Vec<String> {
    unsafe {
        PgList::<pg_sys::Node>::from_pg(l)
            .iter_ptr()
            .filter_map(|n| strval(n))
            .collect()
    }
}

/// The relation a name list (`[schema.]name`) denotes, through search_path.
unsafe fn list_rel(l: *mut pg_sys::List, creating: bool) -> Option<(String, String)> {
    if l.is_null() {
        return None;
    }
    rv_key(pg_sys::makeRangeVarFromNameList(l), creating)
}

/// A qualified type or function name: (schema, name), unqualified names in the
/// schema where CREATE would put them or where search_path finds a type.
unsafe fn qualified_name(l: *mut pg_sys::List, is_type: bool) -> Option<(String, String)> {
    let parts = names(l);
    match parts.as_slice() {
        [s, n] => Some((s.clone(), n.clone())),
        [n] => {
            if is_type {
                let c = std::ffi::CString::new(n.as_str()).ok()?;
                let t = pg_sys::TypenameGetTypid(c.as_ptr());
                if t != pg_sys::InvalidOid {
                    let nsp = type_namespace(t)?;
                    return Some((nsp, n.clone()));
                }
            }
            let mut objname: *mut c_char = std::ptr::null_mut();
            let nsp = pg_sys::QualifiedNameGetCreationNamespace(l, &mut objname);
            Some((nsp_name(nsp)?, n.clone()))
        }
        _ => None,
    }
}

unsafe fn type_namespace(t: Oid) -> Option<String> {
    let tup = pg_sys::SearchSysCache1(
        pg_sys::SysCacheIdentifier::TYPEOID as _,
        pg_sys::Datum::from(t),
    );
    if tup.is_null() {
        return None;
    }
    let form = pg_sys::GETSTRUCT(tup) as *mut pg_sys::FormData_pg_type;
    let nsp = (*form).typnamespace;
    pg_sys::ReleaseSysCache(tup);
    nsp_name(nsp)
}

fn rel_kind(t: ObjectType::Type) -> bool {
    matches!(
        t,
        ObjectType::OBJECT_TABLE
            | ObjectType::OBJECT_VIEW
            | ObjectType::OBJECT_MATVIEW
            | ObjectType::OBJECT_SEQUENCE
            | ObjectType::OBJECT_FOREIGN_TABLE
    )
}

/// Objects that belong to a table, named `[schema.]table.name`.
fn table_part_kind(t: ObjectType::Type) -> bool {
    matches!(
        t,
        ObjectType::OBJECT_COLUMN
            | ObjectType::OBJECT_TABCONSTRAINT
            | ObjectType::OBJECT_TRIGGER
            | ObjectType::OBJECT_POLICY
            | ObjectType::OBJECT_RULE
    )
}

/// What a statement reaches (see the module documentation).
///
/// # Safety
/// `stmt` is a utility statement's parse tree; call inside a transaction.
pub unsafe fn reach(stmt: *mut pg_sys::Node) -> Reach {
    let mut sc = part();
    let add = |sc: &mut Scope, k: Option<(String, String)>| -> bool {
        match k {
            Some(k) => {
                sc.relations.insert(k);
                true
            }
            None => false,
        }
    };
    match (*stmt).type_ {
        NodeTag::T_CreateStmt => {
            let s = stmt as *mut pg_sys::CreateStmt;
            if !add(&mut sc, rv_key((*s).relation, true)) {
                return Reach::Nothing; // temporary table
            }
            for p in PgList::<pg_sys::RangeVar>::from_pg((*s).inhRelations).iter_ptr() {
                add(&mut sc, rv_key(p, false));
            }
        }
        NodeTag::T_CreateTableAsStmt => {
            let s = stmt as *mut pg_sys::CreateTableAsStmt;
            if (*s).into.is_null() || !add(&mut sc, rv_key((*(*s).into).rel, true)) {
                return Reach::Nothing;
            }
        }
        NodeTag::T_ViewStmt => {
            if !add(
                &mut sc,
                rv_key((*(stmt as *mut pg_sys::ViewStmt)).view, true),
            ) {
                return Reach::Nothing;
            }
        }
        NodeTag::T_CreateSeqStmt => {
            if !add(
                &mut sc,
                rv_key((*(stmt as *mut pg_sys::CreateSeqStmt)).sequence, true),
            ) {
                return Reach::Nothing;
            }
        }
        NodeTag::T_AlterSeqStmt => {
            add(
                &mut sc,
                rv_key((*(stmt as *mut pg_sys::AlterSeqStmt)).sequence, false),
            );
        }
        NodeTag::T_IndexStmt => {
            add(
                &mut sc,
                rv_key((*(stmt as *mut pg_sys::IndexStmt)).relation, false),
            );
        }
        NodeTag::T_AlterTableStmt => {
            let s = stmt as *mut pg_sys::AlterTableStmt;
            add(&mut sc, rv_key((*s).relation, false));
            for cmd in PgList::<pg_sys::AlterTableCmd>::from_pg((*s).cmds).iter_ptr() {
                use pg_sys::AlterTableType as A;
                let sub = (*cmd).subtype;
                if sub == A::AT_AttachPartition || sub == A::AT_DetachPartition {
                    let pc = (*cmd).def as *mut pg_sys::PartitionCmd;
                    if !pc.is_null() {
                        add(&mut sc, rv_key((*pc).name, false));
                    }
                } else if (sub == A::AT_DropColumn || sub == A::AT_DropConstraint)
                    && (*cmd).behavior == pg_sys::DropBehavior::DROP_CASCADE
                {
                    // CASCADE reaches dependents we cannot name beforehand.
                    return Reach::Everything;
                }
            }
        }
        NodeTag::T_RenameStmt => {
            let s = stmt as *mut pg_sys::RenameStmt;
            let t = (*s).renameType;
            if rel_kind(t) || table_part_kind(t) || t == ObjectType::OBJECT_INDEX {
                let rel = if t == ObjectType::OBJECT_INDEX {
                    let oid = relid_of((*s).relation);
                    if oid == pg_sys::InvalidOid {
                        return Reach::Nothing;
                    }
                    rel_key(pg_sys::IndexGetRelation(oid, true))
                } else {
                    rv_key((*s).relation, false)
                };
                let Some((schema, name)) = rel else {
                    return Reach::Nothing;
                };
                if rel_kind(t) {
                    if let Some(new) = cstr((*s).newname) {
                        sc.relations.insert((schema.clone(), new));
                    }
                }
                sc.relations.insert((schema, name));
            } else if t == ObjectType::OBJECT_SCHEMA {
                sc.contents.extend(cstr((*s).subname));
                sc.contents.extend(cstr((*s).newname));
            } else if matches!(t, ObjectType::OBJECT_TYPE | ObjectType::OBJECT_DOMAIN) {
                let Some((schema, name)) = qualified_name((*s).object as *mut pg_sys::List, true)
                else {
                    return Reach::Everything;
                };
                if let Some(new) = cstr((*s).newname) {
                    sc.types.insert((schema.clone(), new));
                }
                sc.types.insert((schema, name));
            } else {
                return Reach::Everything;
            }
        }
        NodeTag::T_AlterObjectSchemaStmt => {
            let s = stmt as *mut pg_sys::AlterObjectSchemaStmt;
            let t = (*s).objectType;
            let new = cstr((*s).newschema).unwrap_or_default();
            if rel_kind(t) {
                let Some((schema, name)) = rv_key((*s).relation, false) else {
                    return Reach::Nothing;
                };
                sc.relations.insert((new, name.clone()));
                sc.relations.insert((schema, name));
            } else if matches!(t, ObjectType::OBJECT_TYPE | ObjectType::OBJECT_DOMAIN) {
                let Some((schema, name)) = qualified_name((*s).object as *mut pg_sys::List, true)
                else {
                    return Reach::Everything;
                };
                sc.types.insert((new, name.clone()));
                sc.types.insert((schema, name));
            } else {
                return Reach::Everything;
            }
        }
        NodeTag::T_DropStmt => {
            let s = stmt as *mut pg_sys::DropStmt;
            if (*s).behavior == pg_sys::DropBehavior::DROP_CASCADE {
                return Reach::Everything;
            }
            let t = (*s).removeType;
            for obj in PgList::<pg_sys::Node>::from_pg((*s).objects).iter_ptr() {
                if rel_kind(t) {
                    add(&mut sc, list_rel(obj as *mut pg_sys::List, false));
                } else if t == ObjectType::OBJECT_INDEX {
                    let rv = pg_sys::makeRangeVarFromNameList(obj as *mut pg_sys::List);
                    let oid = relid_of(rv);
                    if oid != pg_sys::InvalidOid {
                        add(&mut sc, rel_key(pg_sys::IndexGetRelation(oid, true)));
                    }
                } else if table_part_kind(t) {
                    let mut l = names(obj as *mut pg_sys::List);
                    l.pop();
                    let rv = match l.as_slice() {
                        [n] => pg_sys::makeRangeVar(
                            std::ptr::null_mut(),
                            pg_sys::pstrdup(
                                std::ffi::CString::new(n.as_str())
                                    .unwrap_or_default()
                                    .as_ptr(),
                            ),
                            -1,
                        ),
                        [s_, n] => pg_sys::makeRangeVar(
                            pg_sys::pstrdup(
                                std::ffi::CString::new(s_.as_str())
                                    .unwrap_or_default()
                                    .as_ptr(),
                            ),
                            pg_sys::pstrdup(
                                std::ffi::CString::new(n.as_str())
                                    .unwrap_or_default()
                                    .as_ptr(),
                            ),
                            -1,
                        ),
                        _ => return Reach::Everything,
                    };
                    add(&mut sc, rv_key(rv, false));
                } else if matches!(t, ObjectType::OBJECT_TYPE | ObjectType::OBJECT_DOMAIN) {
                    let tn = obj as *mut pg_sys::TypeName;
                    match qualified_name((*tn).names, true) {
                        Some(k) => {
                            sc.types.insert(k);
                        }
                        None => return Reach::Everything,
                    }
                } else if t == ObjectType::OBJECT_SCHEMA {
                    sc.contents.extend(strval(obj));
                } else if matches!(
                    t,
                    ObjectType::OBJECT_FUNCTION
                        | ObjectType::OBJECT_PROCEDURE
                        | ObjectType::OBJECT_ROUTINE
                ) {
                    let owa = obj as *mut pg_sys::ObjectWithArgs;
                    match names((*owa).objname).as_slice() {
                        [s_, n] => {
                            sc.functions.insert((s_.clone(), n.clone()));
                        }
                        _ => return Reach::Everything,
                    }
                } else if matches!(
                    t,
                    ObjectType::OBJECT_EXTENSION
                        | ObjectType::OBJECT_ROLE
                        | ObjectType::OBJECT_DATABASE
                        | ObjectType::OBJECT_TABLESPACE
                        | ObjectType::OBJECT_PUBLICATION
                        | ObjectType::OBJECT_SUBSCRIPTION
                        | ObjectType::OBJECT_AGGREGATE
                        | ObjectType::OBJECT_STATISTIC_EXT
                ) || model_less(t)
                {
                    // Without CASCADE (above), nothing the schema model holds goes.
                    return Reach::Nothing;
                } else {
                    return Reach::Everything;
                }
            }
        }
        NodeTag::T_CreateTrigStmt => {
            add(
                &mut sc,
                rv_key((*(stmt as *mut pg_sys::CreateTrigStmt)).relation, false),
            );
        }
        NodeTag::T_CreatePolicyStmt => {
            add(
                &mut sc,
                rv_key((*(stmt as *mut pg_sys::CreatePolicyStmt)).table, false),
            );
        }
        NodeTag::T_AlterPolicyStmt => {
            add(
                &mut sc,
                rv_key((*(stmt as *mut pg_sys::AlterPolicyStmt)).table, false),
            );
        }
        NodeTag::T_RuleStmt => {
            add(
                &mut sc,
                rv_key((*(stmt as *mut pg_sys::RuleStmt)).relation, false),
            );
        }
        NodeTag::T_CommentStmt => {
            let s = stmt as *mut pg_sys::CommentStmt;
            let t = (*s).objtype;
            if rel_kind(t) || t == ObjectType::OBJECT_INDEX {
                let k = list_rel((*s).object as *mut pg_sys::List, false);
                if t == ObjectType::OBJECT_INDEX {
                    return Reach::Everything;
                }
                add(&mut sc, k);
            } else if table_part_kind(t) {
                let l = (*s).object as *mut pg_sys::List;
                let mut parts = names(l);
                parts.pop();
                match parts.as_slice() {
                    [s_, n] => {
                        sc.relations.insert((s_.clone(), n.clone()));
                    }
                    _ => return Reach::Everything,
                }
            } else if t == ObjectType::OBJECT_SCHEMA {
                sc.schemas.extend(strval((*s).object));
            } else {
                return Reach::Everything;
            }
        }
        NodeTag::T_GrantStmt => {
            let s = stmt as *mut pg_sys::GrantStmt;
            if (*s).targtype != pg_sys::GrantTargetType::ACL_TARGET_OBJECT {
                return Reach::Everything;
            }
            match (*s).objtype {
                ObjectType::OBJECT_TABLE | ObjectType::OBJECT_SEQUENCE => {
                    for rv in PgList::<pg_sys::RangeVar>::from_pg((*s).objects).iter_ptr() {
                        add(&mut sc, rv_key(rv, false));
                    }
                }
                ObjectType::OBJECT_SCHEMA => {
                    for n in PgList::<pg_sys::Node>::from_pg((*s).objects).iter_ptr() {
                        sc.schemas.extend(strval(n));
                    }
                }
                ObjectType::OBJECT_DATABASE
                | ObjectType::OBJECT_TABLESPACE
                | ObjectType::OBJECT_LARGEOBJECT
                | ObjectType::OBJECT_FDW
                | ObjectType::OBJECT_FOREIGN_SERVER => return Reach::Nothing,
                _ => return Reach::Everything,
            }
        }
        NodeTag::T_CreateEnumStmt => {
            match qualified_name((*(stmt as *mut pg_sys::CreateEnumStmt)).typeName, false) {
                Some(k) => {
                    sc.types.insert(k);
                }
                None => return Reach::Everything,
            }
        }
        NodeTag::T_AlterEnumStmt => {
            match qualified_name((*(stmt as *mut pg_sys::AlterEnumStmt)).typeName, true) {
                Some(k) => {
                    sc.types.insert(k);
                }
                None => return Reach::Everything,
            }
        }
        NodeTag::T_CreateDomainStmt => {
            match qualified_name((*(stmt as *mut pg_sys::CreateDomainStmt)).domainname, false) {
                Some(k) => {
                    sc.types.insert(k);
                }
                None => return Reach::Everything,
            }
        }
        NodeTag::T_AlterDomainStmt => {
            match qualified_name((*(stmt as *mut pg_sys::AlterDomainStmt)).typeName, true) {
                Some(k) => {
                    sc.types.insert(k);
                }
                None => return Reach::Everything,
            }
        }
        NodeTag::T_CreateFunctionStmt => {
            match qualified_name((*(stmt as *mut pg_sys::CreateFunctionStmt)).funcname, false) {
                Some(k) => {
                    sc.functions.insert(k);
                }
                None => return Reach::Everything,
            }
        }
        NodeTag::T_CreateSchemaStmt => {
            let s = stmt as *mut pg_sys::CreateSchemaStmt;
            let Some(name) = cstr((*s).schemaname) else {
                return Reach::Everything; // AUTHORIZATION only: named after the role
            };
            if (*s).schemaElts.is_null() {
                sc.schemas.insert(name);
            } else {
                sc.contents.insert(name);
            }
        }
        // Nothing the schema model holds.
        NodeTag::T_TruncateStmt
        | NodeTag::T_VacuumStmt
        | NodeTag::T_ClusterStmt
        | NodeTag::T_ReindexStmt
        | NodeTag::T_RefreshMatViewStmt
        | NodeTag::T_AlterOwnerStmt
        | NodeTag::T_AlterDefaultPrivilegesStmt
        | NodeTag::T_CreateRoleStmt
        | NodeTag::T_AlterRoleStmt
        | NodeTag::T_AlterRoleSetStmt
        | NodeTag::T_DropRoleStmt
        | NodeTag::T_GrantRoleStmt
        | NodeTag::T_CreatedbStmt
        | NodeTag::T_AlterDatabaseStmt
        | NodeTag::T_AlterDatabaseSetStmt
        | NodeTag::T_DropdbStmt
        | NodeTag::T_CreateExtensionStmt
        | NodeTag::T_AlterExtensionStmt
        | NodeTag::T_CreateTableSpaceStmt
        | NodeTag::T_DropTableSpaceStmt
        | NodeTag::T_AlterSystemStmt
        | NodeTag::T_VariableSetStmt
        | NodeTag::T_CreatePublicationStmt
        | NodeTag::T_AlterPublicationStmt
        | NodeTag::T_CreateSubscriptionStmt
        | NodeTag::T_AlterSubscriptionStmt
        | NodeTag::T_DropSubscriptionStmt
        | NodeTag::T_CreateStatsStmt
        | NodeTag::T_AlterStatsStmt
        | NodeTag::T_SecLabelStmt
        // Objects the schema model does not hold (operators, casts, collations, text
        // search, access methods, languages, foreign-data wrappers and servers…):
        // creating or altering them changes nothing a snapshot keeps.
        | NodeTag::T_CreateCastStmt
        | NodeTag::T_CreateConversionStmt
        | NodeTag::T_CreateAmStmt
        | NodeTag::T_CreateOpClassStmt
        | NodeTag::T_CreateOpFamilyStmt
        | NodeTag::T_AlterOpFamilyStmt
        | NodeTag::T_AlterOperatorStmt
        | NodeTag::T_CreateTransformStmt
        | NodeTag::T_CreatePLangStmt
        | NodeTag::T_CreateEventTrigStmt
        | NodeTag::T_AlterEventTrigStmt
        | NodeTag::T_AlterTSDictionaryStmt
        | NodeTag::T_AlterTSConfigurationStmt
        | NodeTag::T_CreateFdwStmt
        | NodeTag::T_AlterFdwStmt
        | NodeTag::T_CreateForeignServerStmt
        | NodeTag::T_AlterForeignServerStmt
        | NodeTag::T_CreateUserMappingStmt
        | NodeTag::T_AlterUserMappingStmt
        | NodeTag::T_DropUserMappingStmt
        | NodeTag::T_AlterCollationStmt => return Reach::Nothing,
        // CREATE AGGREGATE, OPERATOR, TEXT SEARCH …, COLLATION: none in the model; a
        // base type (CREATE TYPE … (INPUT = …)) neither (only enums and domains are).
        NodeTag::T_DefineStmt => return Reach::Nothing,
        _ => return Reach::Everything,
    }
    if sc.is_empty() {
        Reach::Nothing
    } else {
        Reach::Part(sc)
    }
}

/// Object kinds the schema model does not hold: dropping one (without CASCADE) takes
/// nothing a snapshot keeps.
fn model_less(t: ObjectType::Type) -> bool {
    matches!(
        t,
        ObjectType::OBJECT_OPERATOR
            | ObjectType::OBJECT_OPCLASS
            | ObjectType::OBJECT_OPFAMILY
            | ObjectType::OBJECT_CAST
            | ObjectType::OBJECT_CONVERSION
            | ObjectType::OBJECT_COLLATION
            | ObjectType::OBJECT_ACCESS_METHOD
            | ObjectType::OBJECT_LANGUAGE
            | ObjectType::OBJECT_TRANSFORM
            | ObjectType::OBJECT_EVENT_TRIGGER
            | ObjectType::OBJECT_TSPARSER
            | ObjectType::OBJECT_TSDICTIONARY
            | ObjectType::OBJECT_TSTEMPLATE
            | ObjectType::OBJECT_TSCONFIGURATION
            | ObjectType::OBJECT_FDW
            | ObjectType::OBJECT_FOREIGN_SERVER
    )
}
