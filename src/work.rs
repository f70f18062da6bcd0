//! Work objects: what a maintenance tool creates for one operation and drops when the
//! operation is done — pg_repack's log table, its copy of the table and the row type
//! of its key in schema `repack`, and the trigger on the user's table that feeds the
//! log. pg_repack drops them minutes later, from another transaction and another
//! connection, with `DROP TRIGGER IF EXISTS` and `DROP TABLE IF EXISTS`; treated as
//! the user's objects, those drops would need an approval, the tool would retry them
//! forever and leave its trigger copying every write of the user's table.
//!
//! The principle, not the tool's name: an object is a work object when
//! * a superuser created it for an extension's operation — a table or a type in a
//!   schema that belongs to an extension, or a trigger whose function belongs to an
//!   extension (not an extension member itself). Superusers only: they can do
//!   anything anyway, so the exemption gives no one more than they had, while a role
//!   that owns an extension (a trusted one) could otherwise add a schema of its own
//!   to it and pass its tables off as work objects;
//! * it is recorded here when the transaction that created it commits (as the
//!   superuser, in `migsafe.work_object`, which no other role may write);
//! * and the operation still runs: the session that created it is alive, and the
//!   session dropping it is of the same role.
//!
//! Such an object is no client's: dropping it needs no approval. A user cannot
//! disguise a real table as one: a non-superuser's objects never qualify, an ordinary
//! table in an ordinary schema never does, and a work object whose creating session
//! has ended is judged like any other table. Rows of ended sessions are deleted at the
//! next recording.

use crate::pgutil::role_name;
use crate::spi::{self, As};
use pgrx::pg_sys::{self, Oid};

/// Is pg_migsafe's work-object table installed in this database (0.5.0 or later),
/// and is it the extension's own (see `pgutil::migsafe_relation`)?
fn installed() -> bool {
    crate::pgutil::migsafe_relation(c"work_object").is_some()
}

/// Is the session's role a superuser (the only one whose objects can be work objects)?
fn session_superuser() -> bool {
    unsafe { pg_sys::superuser_arg(pg_sys::GetSessionUserId()) }
}

/// Is the relation in a schema that belongs to an extension? (A syscache and a
/// pg_depend index lookup, no query.)
fn in_extension_schema(relid: Oid) -> bool {
    unsafe {
        let nsp = pg_sys::get_rel_namespace(relid);
        nsp != pg_sys::InvalidOid
            && pg_sys::getExtensionOfObject(pg_sys::NamespaceRelationId, nsp) != pg_sys::InvalidOid
    }
}

/// Did this transaction create a relation in a schema that belongs to an extension?
/// The cheap look that comes first (no query for an ordinary CREATE TABLE, nor for a
/// foreign key's triggers): a trigger is a work object only next to such a relation,
/// created by the same transaction for the same operation.
fn creates_in_extension_schema(created: &[(Oid, Oid)]) -> bool {
    created
        .iter()
        .any(|&(class, object)| class == pg_sys::RelationRelationId && in_extension_schema(object))
}

/// The transaction callback's part before commit (called by `hooks`; not at PREPARE:
/// a prepared transaction is no running operation): records the work objects this
/// transaction created — relations and composite types in an extension's schema,
/// triggers calling a function of that same extension (a table's row and array types,
/// and an extension's own members, are not work objects). A failure to record is a
/// WARNING, never a failed commit: the objects are then judged like any others.
pub(crate) fn on_pre_commit() {
    // Every transaction commits through here: nothing created, nothing to do.
    if !crate::track::created_any() || !session_superuser() {
        return;
    }
    let mut created = crate::track::created_objects();
    if !creates_in_extension_schema(&created) || !installed() {
        return;
    }
    created.sort_by_key(|&(c, o)| (u32::from(c), u32::from(o)));
    created.dedup();
    let recorded = spi::in_subtransaction(|| record(&created));
    if let Err(e) = recorded {
        pgrx::warning!("pg_migsafe: the work objects of this transaction were not recorded: {e}");
    }
}

fn record(created: &[(Oid, Oid)]) {
    let classes: Vec<i64> = created.iter().map(|&(c, _)| u32::from(c) as i64).collect();
    let objects: Vec<i64> = created.iter().map(|&(_, o)| u32::from(o) as i64).collect();
    let role = role_name(unsafe { pg_sys::GetSessionUserId() });
    spi::run(
        As::Superuser,
        "WITH gone AS ( \
           DELETE FROM migsafe.work_object w \
            WHERE (w.classid, w.objid) IN ( \
                    SELECT s.classid, s.objid FROM migsafe.work_object s \
                     WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_stat_activity a \
                                        WHERE a.pid OPERATOR(pg_catalog.=) s.session_pid \
                                          AND a.backend_start OPERATOR(pg_catalog.=) s.session_start) \
                       FOR UPDATE SKIP LOCKED)), \
         created AS ( \
           SELECT x.c8::pg_catalog.oid AS c, x.o8::pg_catalog.oid AS o \
             FROM ROWS FROM (pg_catalog.unnest($1::pg_catalog.int8[]), pg_catalog.unnest($2::pg_catalog.int8[])) \
                  AS x(c8, o8)), \
         exts AS ( \
           SELECT DISTINCT d.refobjid AS ext FROM created o \
             JOIN pg_catalog.pg_class r ON r.oid OPERATOR(pg_catalog.=) o.o \
             JOIN pg_catalog.pg_depend d \
               ON d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_namespace'::pg_catalog.regclass \
              AND d.objid OPERATOR(pg_catalog.=) r.relnamespace AND d.deptype OPERATOR(pg_catalog.=) 'e' \
            WHERE o.c OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass) \
         INSERT INTO migsafe.work_object (classid, objid, identity, created_by, session_pid, session_start) \
         SELECT o.c, o.o, (pg_catalog.pg_identify_object(o.c, o.o, 0)).identity, $3, \
                pg_catalog.pg_backend_pid(), \
                (SELECT a.backend_start FROM pg_catalog.pg_stat_activity a \
                  WHERE a.pid OPERATOR(pg_catalog.=) pg_catalog.pg_backend_pid()) \
           FROM created o \
          WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend m \
                             WHERE m.classid OPERATOR(pg_catalog.=) o.c AND m.objid OPERATOR(pg_catalog.=) o.o \
                               AND m.deptype OPERATOR(pg_catalog.=) 'e') \
            AND (SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname OPERATOR(pg_catalog.=) $3) \
            AND CASE \
            WHEN o.c OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass \
              OR o.c OPERATOR(pg_catalog.=) 'pg_catalog.pg_type'::pg_catalog.regclass THEN EXISTS ( \
                SELECT 1 FROM pg_catalog.pg_namespace n \
                  JOIN pg_catalog.pg_depend d \
                    ON d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_namespace'::pg_catalog.regclass \
                   AND d.objid OPERATOR(pg_catalog.=) n.oid AND d.deptype OPERATOR(pg_catalog.=) 'e' \
                 WHERE n.oid OPERATOR(pg_catalog.=) (CASE WHEN o.c OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass \
                              THEN (SELECT r.relnamespace FROM pg_catalog.pg_class r WHERE r.oid OPERATOR(pg_catalog.=) o.o) \
                              ELSE (SELECT t.typnamespace FROM pg_catalog.pg_type t WHERE t.oid OPERATOR(pg_catalog.=) o.o \
                                       AND t.typcategory OPERATOR(pg_catalog.<>) 'A' \
                                       AND (t.typrelid OPERATOR(pg_catalog.=) 0 OR EXISTS ( \
                                            SELECT 1 FROM pg_catalog.pg_class c \
                                             WHERE c.oid OPERATOR(pg_catalog.=) t.typrelid \
                                               AND c.relkind OPERATOR(pg_catalog.=) 'c'))) END)) \
            WHEN o.c OPERATOR(pg_catalog.=) 'pg_catalog.pg_trigger'::pg_catalog.regclass THEN EXISTS ( \
                SELECT 1 FROM pg_catalog.pg_trigger t \
                  JOIN pg_catalog.pg_depend d \
                    ON d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_proc'::pg_catalog.regclass \
                   AND d.objid OPERATOR(pg_catalog.=) t.tgfoid AND d.deptype OPERATOR(pg_catalog.=) 'e' \
                 WHERE t.oid OPERATOR(pg_catalog.=) o.o AND NOT t.tgisinternal \
                   AND d.refobjid OPERATOR(pg_catalog.=) ANY (SELECT e.ext FROM exts e)) \
            ELSE false END \
         ON CONFLICT (classid, objid) DO UPDATE \
           SET identity = EXCLUDED.identity, created_by = EXCLUDED.created_by, \
               session_pid = EXCLUDED.session_pid, session_start = EXCLUDED.session_start, \
               created_at = EXCLUDED.created_at",
        &[classes.into(), objects.into(), role.as_str().into()],
    );
}

/// A relation (a table being built, say pg_repack's copy) that is a work object of a
/// running operation: its index builds are no client's business either. Asks the
/// catalog only for a superuser session and a relation in an extension's schema.
pub fn is_work_relation(relid: Oid) -> bool {
    session_superuser()
        && in_extension_schema(relid)
        && is_work_object(pg_sys::RelationRelationId, relid)
}

/// Is this existing object a work object of an operation still running, created by
/// a session of the caller's session role? Asked only for a DROP of an existing
/// object.
pub fn is_work_object(class: Oid, object: Oid) -> bool {
    if !session_superuser() || !installed() {
        return false;
    }
    let role = role_name(unsafe { pg_sys::GetSessionUserId() });
    spi::one::<bool>(
        As::Superuser,
        "SELECT EXISTS (SELECT 1 FROM migsafe.work_object w \
                          JOIN pg_catalog.pg_stat_activity a \
                            ON a.pid OPERATOR(pg_catalog.=) w.session_pid \
                           AND a.backend_start OPERATOR(pg_catalog.=) w.session_start \
                         WHERE w.classid OPERATOR(pg_catalog.=) $1 AND w.objid OPERATOR(pg_catalog.=) $2 \
                           AND w.created_by OPERATOR(pg_catalog.=) $3 \
                           AND w.identity OPERATOR(pg_catalog.=) (pg_catalog.pg_identify_object($1, $2, 0)).identity)",
        &[class.into(), object.into(), role.as_str().into()],
    )
    .unwrap_or(false)
}
