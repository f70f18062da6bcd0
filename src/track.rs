//! Objects created in the current transaction, recorded by an object_access_hook
//! (OAT_POST_CREATE) and forgotten at transaction end or subtransaction abort.
//! The hook exempts them: a migration may create something and then drop, rename or
//! alter it freely (Drizzle and many tools create-then-alter).
//!
//! "Created in this transaction" means *absent when the transaction started*:
//! * `CREATE OR REPLACE` of an existing function, trigger, rule (a view's query),
//!   transform or language updates the catalog row in place; the post-create hook
//!   fires all the same. A row that is an update (`HEAP_UPDATED`, seen with a
//!   self-snapshot) is not recorded.
//! * `ALTER TABLE … ALTER COLUMN … TYPE` drops the table's indexes and constraints and
//!   builds them again under the same names. An index or constraint dropped in this
//!   transaction that existed before it is remembered by its identity; one created
//!   afterwards under that identity is not new.

use crate::pgutil::catalog;
use pgrx::pg_sys::{self, Oid};
use pgrx::prelude::*;
use std::cell::RefCell;

#[derive(Clone, Copy, PartialEq, Eq)]
struct Created {
    class_id: Oid,
    object_id: Oid,
    sub_id: i32,
    subxact: pg_sys::SubTransactionId,
}

thread_local! {
    static CREATED: RefCell<Vec<Created>> = const { RefCell::new(Vec::new()) };
    /// Indexes and constraints that existed before the transaction and were dropped in
    /// it: (catalog, identity, subtransaction).
    static DROPPED: RefCell<Vec<(Oid, String, pg_sys::SubTransactionId)>> = const { RefCell::new(Vec::new()) };
}

/// Was (class, object, sub) created in the current transaction, and absent when it
/// started?
pub fn is_new(class_id: Oid, object_id: Oid, sub_id: i32) -> bool {
    let created = CREATED.with(|c| {
        c.borrow()
            .iter()
            .any(|e| e.class_id == class_id && e.object_id == object_id && e.sub_id == sub_id)
    });
    if !created || sub_id != 0 || DROPPED.with(|d| d.borrow().is_empty()) {
        return created;
    }
    // Built again under the identity of an object that existed before?
    match unsafe { rebuildable_identity(class_id, object_id) } {
        Some(id) => !DROPPED.with(|d| {
            d.borrow()
                .iter()
                .any(|(c, i, _)| *c == class_id && *i == id)
        }),
        None => true,
    }
}

/// Did the current transaction create anything? (Every commit asks: no allocation.)
pub fn created_any() -> bool {
    CREATED.with(|c| !c.borrow().is_empty())
}

/// The whole objects (no columns) created in the current transaction: (catalog,
/// object).
pub fn created_objects() -> Vec<(Oid, Oid)> {
    CREATED.with(|c| {
        c.borrow()
            .iter()
            .filter(|e| e.sub_id == 0)
            .map(|e| (e.class_id, e.object_id))
            .collect()
    })
}

/// The identity of an index (`schema.name`), a table constraint (`name on
/// schema.table`) or an extended statistics object: what ALTER COLUMN … TYPE builds
/// again. None for anything else.
unsafe fn rebuildable_identity(class_id: Oid, object_id: Oid) -> Option<String> {
    if class_id == pg_sys::RelationRelationId {
        if !matches!(pg_sys::get_rel_relkind(object_id) as u8, b'i' | b'I') {
            return None;
        }
        let name = crate::pgutil::cstr(pg_sys::get_rel_name(object_id))?;
        return Some(crate::pgutil::qualified(
            pg_sys::get_rel_namespace(object_id),
            &name,
        ));
    }
    #[cfg(not(feature = "pg13"))]
    if class_id == catalog::CONSTRAINT || class_id == catalog::STATISTIC_EXT {
        let addr = pg_sys::ObjectAddress {
            classId: class_id,
            objectId: object_id,
            objectSubId: 0,
        };
        return crate::pgutil::cstr(pg_sys::getObjectIdentity(&addr, true));
    }
    None
}

/// OAT_DROP of an index or constraint that existed before the transaction: remember
/// its identity (it may be built again under it).
#[pg_guard]
unsafe extern "C-unwind" fn note_drop(class_id: Oid, object_id: Oid) {
    if is_new(class_id, object_id, 0) {
        return;
    }
    if let Some(id) = rebuildable_identity(class_id, object_id) {
        let sub = current_subxact();
        DROPPED.with(|d| {
            if let Ok(mut d) = d.try_borrow_mut() {
                if d.len() < 10_000 {
                    d.push((class_id, id, sub));
                }
            }
        });
    }
}

/// Before `ALTER TABLE … ALTER COLUMN … TYPE` on a table that existed before the
/// transaction: its extended statistics objects will be built again under their
/// names (PostgreSQL removes the old ones without the drop hook that reports indexes
/// and constraints), so their identities are remembered as existing before.
pub fn note_statistics_of(relid: Oid) {
    if is_new(pg_sys::RelationRelationId, relid, 0) {
        return;
    }
    let ids: Vec<String> = crate::spi::select(
        crate::spi::As::Caller,
        "SELECT pg_catalog.format('%I.%I', n.nspname, s.stxname) FROM pg_catalog.pg_statistic_ext s \
           JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) s.stxnamespace \
          WHERE s.stxrelid OPERATOR(pg_catalog.=) $1",
        &[relid.into()],
        |t| {
            let mut out = Vec::new();
            for r in t {
                if let Some(i) = r.get::<String>(1)? {
                    out.push(i);
                }
            }
            Ok(out)
        },
    );
    let sub = current_subxact();
    DROPPED.with(|d| {
        if let Ok(mut d) = d.try_borrow_mut() {
            for id in ids {
                if d.len() < 10_000 {
                    d.push((catalog::STATISTIC_EXT, id, sub));
                }
            }
        }
    });
}

/// Is the catalog row of (class, object) an update of an older row (`CREATE OR
/// REPLACE` of an existing object)? Read with a self-snapshot, which sees the row the
/// current command wrote.
#[pg_guard]
unsafe extern "C-unwind" fn replaced(class_id: Oid, object_id: Oid) -> bool {
    let index = pg_sys::get_object_oid_index(class_id);
    if index == pg_sys::InvalidOid {
        return false;
    }
    let attnum = pg_sys::get_object_attnum_oid(class_id);
    let rel = pg_sys::table_open(class_id, pg_sys::AccessShareLock as _);
    let mut key: pg_sys::ScanKeyData = std::mem::zeroed();
    pg_sys::ScanKeyInit(
        &mut key,
        attnum,
        pg_sys::BTEqualStrategyNumber as _,
        pg_sys::Oid::from(pg_sys::F_OIDEQ),
        pg_sys::Datum::from(object_id),
    );
    let scan = pg_sys::systable_beginscan(
        rel,
        index,
        true,
        std::ptr::addr_of_mut!(pg_sys::SnapshotSelfData),
        1,
        &mut key,
    );
    let tup = pg_sys::systable_getnext(scan);
    let updated = !tup.is_null() && (*(*tup).t_data).t_infomask & pg_sys::HEAP_UPDATED as u16 != 0;
    pg_sys::systable_endscan(scan);
    pg_sys::table_close(rel, pg_sys::AccessShareLock as _);
    updated
}

/// Catalogs whose rows `CREATE OR REPLACE` updates in place: pg_proc, pg_trigger,
/// pg_rewrite, pg_transform, pg_language.
fn replaceable(class_id: Oid) -> bool {
    [
        pg_sys::ProcedureRelationId,
        pg_sys::TriggerRelationId,
        catalog::REWRITE,
        catalog::TRANSFORM,
        catalog::LANGUAGE,
    ]
    .contains(&class_id)
}

fn record(class_id: Oid, object_id: Oid, sub_id: i32, subxact: pg_sys::SubTransactionId) {
    CREATED.with(|c| {
        if let Ok(mut v) = c.try_borrow_mut() {
            v.push(Created {
                class_id,
                object_id,
                sub_id,
                subxact,
            })
        }
    });
}

/// The object_access hook's part (called by `hooks`, before the audit's part and the
/// next hook). Nothing here raises an error that the caller would have to catch.
pub(crate) unsafe fn on_object_access(
    access: pg_sys::ObjectAccessType::Type,
    class_id: Oid,
    object_id: Oid,
    sub_id: i32,
) {
    if access == pg_sys::ObjectAccessType::OAT_POST_CREATE
        && !(sub_id == 0 && replaceable(class_id) && replaced(class_id, object_id))
    {
        record(class_id, object_id, sub_id, current_subxact());
    }
    if access == pg_sys::ObjectAccessType::OAT_DROP
        && sub_id == 0
        && (class_id == pg_sys::RelationRelationId || class_id == catalog::CONSTRAINT)
    {
        note_drop(class_id, object_id);
    }
}

unsafe extern "C-unwind" {
    #[link_name = "GetCurrentSubTransactionId"]
    fn raw_current_subxact() -> pg_sys::SubTransactionId;
}

fn current_subxact() -> pg_sys::SubTransactionId {
    // SAFETY: a plain getter of backend-local state; it never raises an error.
    unsafe { raw_current_subxact() }
}

/// The transaction callback's part (called by `hooks`, last). Every event ends (or
/// hands off) the transaction's work: commit, abort, prepare, and their parallel
/// variants. Pre-commit events leave the lists alone.
pub(crate) fn on_xact(event: pg_sys::XactEvent::Type) {
    use pg_sys::XactEvent::*;
    match event {
        XACT_EVENT_PRE_COMMIT | XACT_EVENT_PARALLEL_PRE_COMMIT | XACT_EVENT_PRE_PREPARE => {}
        _ => {
            CREATED.with(|c| {
                if let Ok(mut v) = c.try_borrow_mut() {
                    v.clear();
                    v.shrink_to(64);
                }
            });
            DROPPED.with(|d| {
                if let Ok(mut v) = d.try_borrow_mut() {
                    v.clear();
                    v.shrink_to(16);
                }
            });
        }
    }
}

/// A user's subtransaction rolled back (called by `hooks`).
pub(crate) fn on_subxact_abort(my_subid: pg_sys::SubTransactionId) {
    {
        // Subtransaction ids grow monotonically: everything recorded at or after the
        // aborted one belongs to it or to its children.
        CREATED.with(|c| {
            if let Ok(mut v) = c.try_borrow_mut() {
                v.retain(|e| e.subxact < my_subid)
            }
        });
        DROPPED.with(|d| {
            if let Ok(mut v) = d.try_borrow_mut() {
                v.retain(|e| e.2 < my_subid)
            }
        });
    }
}
