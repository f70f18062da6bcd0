//! A partition's place in its partitioned table, as standing approvals judge it
//! (`migsafe.grant_standing_approval`, docs/tools.md): its table, and where its range
//! ends in time.
//!
//! The bound is read from the catalog the way the server reads it: pg_class.relpartbound
//! holds a `PartitionBoundSpec` node (`stringToNode`), whose upper datum is a `Const`
//! of the partition key's type. Only the simple case has an end in time: a range
//! partition of a table partitioned on one column of type date, timestamp or
//! timestamptz, with a finite upper bound. Everything else (list and hash partitions,
//! the default partition, MAXVALUE, other key types, several key columns) has none, and
//! a standing approval never covers it. A timestamp without time zone and a date are
//! read as UTC (not in the session's TimeZone, which the session could change).
//!
//! This runs in the hook, for each partition a statement drops or detaches: syscache
//! reads, and one query for the parent.

use crate::engine::policy::PartitionFact;
use crate::pgutil::{cstr, qualified};
use crate::spi::{self, As};
use pgrx::pg_sys::{self, Oid};

/// Microseconds between 1970-01-01 and 2000-01-01, PostgreSQL's epoch.
const PG_EPOCH_UNIX_US: i64 = 946_684_800_000_000;

/// The partition's facts, or None when `relid` is not a partition.
///
/// # Safety
/// Catalog access: call inside a transaction.
pub unsafe fn fact(relid: Oid) -> Option<PartitionFact> {
    if relid == pg_sys::InvalidOid || !pg_sys::get_rel_relispartition(relid) {
        return None;
    }
    let parent = parent_of(relid)?;
    let name = |oid: Oid| {
        let n = cstr(pg_sys::get_rel_name(oid)).unwrap_or_default();
        qualified(pg_sys::get_rel_namespace(oid), &n)
    };
    Some(PartitionFact {
        partition: name(relid),
        parent: name(parent),
        ends: range_end(relid),
        leaf: pg_sys::get_rel_relkind(relid) as u8 == b'r',
    })
}

/// The partitioned table: pg_inherits' row with inhseqno 1, as get_partition_parent()
/// reads it (pg_inherits has no syscache; the table is readable by every role).
fn parent_of(relid: Oid) -> Option<Oid> {
    spi::one::<Oid>(
        As::Caller,
        "SELECT i.inhparent FROM pg_catalog.pg_inherits i \
          WHERE i.inhrelid OPERATOR(pg_catalog.=) $1 AND i.inhseqno OPERATOR(pg_catalog.=) 1",
        &[relid.into()],
    )
}

/// Where the partition's range ends, in microseconds since 1970 (see the module
/// documentation for when there is an end).
unsafe fn range_end(relid: Oid) -> Option<i64> {
    let tup = pg_sys::SearchSysCache1(
        pg_sys::SysCacheIdentifier::RELOID as _,
        pg_sys::Datum::from(relid),
    );
    if tup.is_null() {
        return None;
    }
    let mut isnull = false;
    let bound = pg_sys::SysCacheGetAttr(
        pg_sys::SysCacheIdentifier::RELOID as _,
        tup,
        pg_sys::Anum_pg_class_relpartbound as _,
        &mut isnull,
    );
    let spec = if isnull {
        std::ptr::null_mut()
    } else {
        let text = pg_sys::text_to_cstring(bound.cast_mut_ptr());
        pg_sys::stringToNode(text) as *mut pg_sys::PartitionBoundSpec
    };
    pg_sys::ReleaseSysCache(tup);
    if spec.is_null()
        || (*spec).type_ != pg_sys::NodeTag::T_PartitionBoundSpec
        || (*spec).is_default
        || (*spec).strategy as u8 != b'r'
    {
        return None;
    }
    let upper = (*spec).upperdatums;
    if upper.is_null() || (*upper).length != 1 {
        return None;
    }
    let datum = pg_sys::list_nth(upper, 0) as *mut pg_sys::PartitionRangeDatum;
    if datum.is_null()
        || (*datum).kind != pg_sys::PartitionRangeDatumKind::PARTITION_RANGE_DATUM_VALUE
    {
        return None;
    }
    let c = (*datum).value as *mut pg_sys::Const;
    if c.is_null() || (*c).xpr.type_ != pg_sys::NodeTag::T_Const || (*c).constisnull {
        return None;
    }
    // A date or a timestamp without time zone is read as UTC, whatever the session's
    // TimeZone: a session cannot move a partition's end by changing its setting.
    let ts = match (*c).consttype {
        pg_sys::TIMESTAMPTZOID | pg_sys::TIMESTAMPOID => (*c).constvalue.value() as i64,
        pg_sys::DATEOID => {
            let days = (*c).constvalue.value() as i32;
            // DATEVAL_NOBEGIN / DATEVAL_NOEND: no end in time.
            if days == i32::MIN || days == i32::MAX {
                return None;
            }
            (days as i64).checked_mul(86_400_000_000)?
        }
        _ => return None,
    };
    // +/-infinity (TIMESTAMP_NOEND / NOBEGIN) is no end in time.
    if ts == i64::MAX || ts == i64::MIN {
        return None;
    }
    ts.checked_add(PG_EPOCH_UNIX_US)
}

thread_local! {
    /// The partitions a standing approval detached in this transaction, as they were
    /// before (pg_partman's retention_schema moves them next: the move is judged
    /// against the same approval): (relation, subtransaction that detached it, facts).
    /// A subtransaction's abort forgets its entries; the transaction's end, all.
    static DETACHED: std::cell::RefCell<Vec<(Oid, pg_sys::SubTransactionId, PartitionFact)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// A standing approval approved detaching this partition (called by the hook, before
/// the statement runs: if it fails, its subtransaction's abort forgets it).
pub fn note_detached(f: &PartitionFact) {
    let relid = spi::one::<Oid>(
        As::Caller,
        "SELECT pg_catalog.to_regclass($1)::pg_catalog.oid",
        &[f.partition.as_str().into()],
    );
    let Some(relid) = relid else {
        return;
    };
    let subid = unsafe { pg_sys::GetCurrentSubTransactionId() };
    DETACHED.with(|d| {
        if let Ok(mut d) = d.try_borrow_mut() {
            d.push((relid, subid, f.clone()));
        }
    });
}

/// The partition `relid` was, when a standing approval detached it in this
/// transaction and it is no longer one.
///
/// # Safety
/// Catalog access: call inside a transaction.
pub unsafe fn detached(relid: Oid) -> Option<PartitionFact> {
    if relid == pg_sys::InvalidOid || pg_sys::get_rel_relispartition(relid) {
        return None;
    }
    DETACHED.with(|d| {
        d.try_borrow()
            .ok()
            .and_then(|d| d.iter().rev().find(|e| e.0 == relid).map(|e| e.2.clone()))
    })
}

/// A subtransaction rolled back: what it detached is attached again.
pub fn on_subxact_abort(subid: pg_sys::SubTransactionId) {
    DETACHED.with(|d| {
        if let Ok(mut d) = d.try_borrow_mut() {
            d.retain(|e| e.1 < subid);
        }
    });
}

/// The transaction ended: nothing detached in it is remembered.
pub fn on_xact(event: pg_sys::XactEvent::Type) {
    use pg_sys::XactEvent::*;
    if matches!(
        event,
        XACT_EVENT_COMMIT | XACT_EVENT_ABORT | XACT_EVENT_PREPARE
    ) {
        DETACHED.with(|d| {
            if let Ok(mut d) = d.try_borrow_mut() {
                d.clear();
            }
        });
    }
}
