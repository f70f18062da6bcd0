//! Small helpers over pg_sys shared by the hook, the classifier, two-phase approval and
//! the audit log: C strings, identifier quoting the way the server does it, object
//! words, role names, and time in Unix microseconds.

use pgrx::pg_sys::{self, Oid};
use std::ffi::{c_char, CStr, CString};

/// PostgreSQL timestamps count microseconds from 2000-01-01; Unix time from 1970-01-01.
pub const PG_EPOCH_UNIX_US: i64 = 946_684_800_000_000;

/// A C string as an owned String (lossy UTF-8); None for a null pointer.
///
/// # Safety
/// `p` is null or points to a NUL-terminated string.
pub unsafe fn cstr(p: *const c_char) -> Option<String> {
    (!p.is_null()).then(|| CStr::from_ptr(p).to_string_lossy().into_owned())
}

/// Catalog oids pgrx does not export on every supported major (fixed since each catalog
/// was created).
pub mod catalog {
    use pgrx::pg_sys::Oid;
    pub const CONSTRAINT: Oid = Oid::from_u32(2606);
    pub const POLICY: Oid = Oid::from_u32(3256);
    pub const STATISTIC_EXT: Oid = Oid::from_u32(3381);
    pub const REWRITE: Oid = Oid::from_u32(2618);
    pub const LANGUAGE: Oid = Oid::from_u32(2612);
    pub const TRANSFORM: Oid = Oid::from_u32(3576);
}

/// The text of a String node (a Value node on PostgreSQL 13-14); None for a null
/// pointer or any other node.
///
/// # Safety
/// `n` is null or points to a parse-tree node.
pub unsafe fn string_node(n: *mut pg_sys::Node) -> Option<String> {
    if n.is_null() || (*n).type_ != pg_sys::NodeTag::T_String {
        return None;
    }
    #[cfg(any(feature = "pg13", feature = "pg14"))]
    {
        cstr((*(n as *mut pg_sys::Value)).val.str_)
    }
    #[cfg(not(any(feature = "pg13", feature = "pg14")))]
    {
        cstr((*(n as *mut pg_sys::String)).sval)
    }
}

/// One statement's text inside a query string that may hold several, from the
/// parser's `stmt_location` / `stmt_len` (a length of 0 means "to the end").
pub fn statement_slice(query: &[u8], location: i32, len: i32) -> String {
    let start = (location.max(0) as usize).min(query.len());
    let end = match len.max(0) as usize {
        0 => query.len(),
        n => (start + n).min(query.len()),
    };
    String::from_utf8_lossy(&query[start..end]).into_owned()
}

/// An identifier quoted as the server quotes it (`quote_identifier`).
pub fn quote(s: &str) -> String {
    let c = CString::new(s).unwrap_or_default();
    unsafe { cstr(pg_sys::quote_identifier(c.as_ptr())).unwrap_or_default() }
}

/// `schema.name`, both quoted as needed.
///
/// # Safety
/// Catalog access: call inside a transaction.
pub unsafe fn qualified(nsp: Oid, name: &str) -> String {
    let n = cstr(pg_sys::get_namespace_name(nsp)).unwrap_or_default();
    format!("{}.{}", quote(&n), quote(name))
}

/// The word for a relkind, as used in messages and the audit log.
pub fn relkind_word(k: c_char) -> &'static str {
    match k as u8 {
        b'r' | b'p' => "table",
        b'v' => "view",
        b'm' => "materialized view",
        b'S' => "sequence",
        b'f' => "foreign table",
        b'i' | b'I' => "index",
        b'c' => "type",
        _ => "relation",
    }
}

/// A role's name (its oid as text if it has none).
pub fn role_name(oid: Oid) -> String {
    unsafe { cstr(pg_sys::GetUserNameFromId(oid, true)) }
        .unwrap_or_else(|| u32::from(oid).to_string())
}

/// Reads a relation's pg_class row from the syscache (None if it does not exist).
///
/// # Safety
/// Catalog access: call inside a transaction.
unsafe fn with_class<R>(relid: Oid, f: impl FnOnce(&pg_sys::FormData_pg_class) -> R) -> Option<R> {
    let tup = pg_sys::SearchSysCache1(
        pg_sys::SysCacheIdentifier::RELOID as _,
        pg_sys::Datum::from(relid),
    );
    if tup.is_null() {
        return None;
    }
    let r = f(&*(pg_sys::GETSTRUCT(tup) as *mut pg_sys::FormData_pg_class));
    pg_sys::ReleaseSysCache(tup);
    Some(r)
}

/// The planner's estimate of a relation's rows (pg_class.reltuples), or None when
/// the server does not know: never analysed (PostgreSQL 14+ says -1; 13 says 0 with
/// no pages), or the relation does not exist. An unknown size is never "empty".
///
/// # Safety
/// Catalog access: call inside a transaction.
pub unsafe fn estimated_rows(relid: Oid) -> Option<f64> {
    with_class(relid, |c| {
        let t = c.reltuples as f64;
        if t > 0.0 {
            Some(t)
        } else if t == 0.0 && (cfg!(not(feature = "pg13")) || c.relpages > 0) {
            Some(0.0)
        } else {
            None
        }
    })
    .flatten()
}

/// A relation's size in bytes as pg_class estimates it (relpages × block size).
///
/// # Safety
/// Catalog access: call inside a transaction.
pub unsafe fn estimated_bytes(relid: Oid) -> Option<i64> {
    with_class(relid, |c| c.relpages as i64 * pg_sys::BLCKSZ as i64)
}

/// The owner of a relation (None if it does not exist).
///
/// # Safety
/// Catalog access: call inside a transaction.
pub unsafe fn rel_owner(relid: Oid) -> Option<Oid> {
    with_class(relid, |c| c.relowner)
}

/// Does row-level security apply to the relation's owner too (ENABLE and FORCE ROW
/// LEVEL SECURITY)? Then what the owner reads may not be all there is.
///
/// # Safety
/// Catalog access: call inside a transaction.
pub unsafe fn row_security_forced(relid: Oid) -> bool {
    with_class(relid, |c| c.relrowsecurity && c.relforcerowsecurity).unwrap_or(false)
}

/// Can this transaction write (not READ ONLY, not on a hot standby)? pg_migsafe does
/// none of its own writes in one that cannot: the user's statement then gets
/// PostgreSQL's own read-only error, not one about pg_migsafe's tables.
pub fn transaction_writable() -> bool {
    unsafe { !pg_sys::XactReadOnly && !pg_sys::RecoveryInProgress() }
}

/// Now, in Unix microseconds.
pub fn now_unix_us() -> i64 {
    unsafe { pg_sys::GetCurrentTimestamp() + PG_EPOCH_UNIX_US }
}

/// This backend's start, in Unix microseconds.
pub fn backend_start_unix_us() -> i64 {
    unsafe { pg_sys::MyStartTimestamp + PG_EPOCH_UNIX_US }
}

/// One of pg_migsafe's own tables in this database, by name: `migsafe.<name>` when it
/// belongs to the installed extension pg_migsafe. A table of that name that does not —
/// in a database without the extension, where any role may create a schema called
/// `migsafe` — is not ours, and nothing may read or write it with raised privileges.
pub fn migsafe_relation(name: &std::ffi::CStr) -> Option<Oid> {
    unsafe {
        let ext = pg_sys::get_extension_oid(c"pg_migsafe".as_ptr(), true);
        if ext == pg_sys::InvalidOid {
            return None;
        }
        let nsp = pg_sys::get_namespace_oid(c"migsafe".as_ptr(), true);
        if nsp == pg_sys::InvalidOid {
            return None;
        }
        let rel = pg_sys::get_relname_relid(name.as_ptr(), nsp);
        (rel != pg_sys::InvalidOid
            && pg_sys::getExtensionOfObject(pg_sys::RelationRelationId, rel) == ext)
            .then_some(rel)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn statement_slice_stays_in_bounds() {
        let q = b"SELECT 1; ALTER TABLE t ADD c int";
        assert_eq!(super::statement_slice(q, 0, 8), "SELECT 1");
        assert_eq!(super::statement_slice(q, 9, 0), " ALTER TABLE t ADD c int");
        assert_eq!(
            super::statement_slice(q, 9, 999),
            " ALTER TABLE t ADD c int"
        );
        assert_eq!(super::statement_slice(q, 999, 5), "");
        assert_eq!(
            super::statement_slice(q, -1, 0),
            "SELECT 1; ALTER TABLE t ADD c int"
        );
    }
}
