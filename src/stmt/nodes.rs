//! Node helpers of the statement layer, written once: node tags, lists, String and
//! A_Const values, name lists, DefElem names — with the PostgreSQL 13/14 vs 15+
//! differences in one place.

use crate::pgutil::cstr;
use pgrx::pg_sys::{self, Node, NodeTag};
use pgrx::PgList;

/// # Safety
/// `n` is a valid node.
pub unsafe fn tag(n: *mut Node) -> NodeTag {
    (*n).type_
}

/// The elements of a List (none for NIL).
///
/// # Safety
/// `l` is a List of nodes, or null.
pub unsafe fn nodes(l: *mut pg_sys::List) -> Vec<*mut Node> {
    PgList::<Node>::from_pg(l).iter_ptr().collect()
}

/// The text of a String (PG 15+) / Value (PG 13-14) node; empty for anything else.
///
/// # Safety
/// `n` is a node, or null.
pub unsafe fn strval(n: *mut Node) -> String {
    crate::pgutil::string_node(n).unwrap_or_default()
}

/// A name list as PostgreSQL prints it (`public.t`).
///
/// # Safety
/// `l` is a List of String nodes, or null.
pub unsafe fn name_list(l: *mut pg_sys::List) -> String {
    if l.is_null() {
        return String::new();
    }
    cstr(pg_sys::NameListToString(l)).unwrap_or_default()
}

/// A RangeVar as written (`schema.name` or `name`).
///
/// # Safety
/// `rv` is a valid RangeVar.
pub unsafe fn rv_name(rv: *mut pg_sys::RangeVar) -> String {
    match cstr((*rv).schemaname) {
        Some(s) => format!("{}.{}", s, cstr((*rv).relname).unwrap_or_default()),
        None => cstr((*rv).relname).unwrap_or_default(),
    }
}

/// The names of the DefElems of an option list.
pub fn defelem_names(l: *mut pg_sys::List) -> Vec<String> {
    unsafe {
        nodes(l)
            .into_iter()
            .filter(|n| tag(*n) == NodeTag::T_DefElem)
            .filter_map(|n| cstr((*(n as *mut pg_sys::DefElem)).defname))
            .collect()
    }
}

/// Does an option list have an option of this name?
pub fn has_option(l: *mut pg_sys::List, name: &str) -> bool {
    defelem_names(l).iter().any(|d| d == name)
}

/// A string constant, possibly cast (`'s'::regclass`).
///
/// # Safety
/// `n` is a valid node.
pub unsafe fn const_text(n: *mut Node) -> Option<String> {
    match tag(n) {
        NodeTag::T_TypeCast => const_text((*(n as *mut pg_sys::TypeCast)).arg),
        NodeTag::T_A_Const => {
            let c = n as *mut pg_sys::A_Const;
            #[cfg(any(feature = "pg13", feature = "pg14"))]
            return ((*c).val.type_ == NodeTag::T_String)
                .then(|| cstr((*c).val.val.str_))
                .flatten();
            #[cfg(not(any(feature = "pg13", feature = "pg14")))]
            return (!(*c).isnull && (*c).val.node.type_ == NodeTag::T_String)
                .then(|| cstr((*c).val.sval.sval))
                .flatten();
        }
        _ => None,
    }
}

/// An integer constant.
///
/// # Safety
/// `n` is a valid node.
pub unsafe fn const_int(n: *mut Node) -> Option<i64> {
    if tag(n) != NodeTag::T_A_Const {
        return None;
    }
    let c = n as *mut pg_sys::A_Const;
    #[cfg(any(feature = "pg13", feature = "pg14"))]
    return ((*c).val.type_ == NodeTag::T_Integer).then(|| (*c).val.val.ival as i64);
    #[cfg(not(any(feature = "pg13", feature = "pg14")))]
    return (!(*c).isnull && (*c).val.node.type_ == NodeTag::T_Integer)
        .then(|| (*c).val.ival.ival as i64);
}

/// Byte offsets in `sql` of the tokens that spell `keyword` (lower case), found with
/// PostgreSQL's own scanner: never inside a string, a comment or a quoted name.
pub fn keyword_locations(sql: &str, keyword: &str) -> Vec<usize> {
    let c_sql = std::ffi::CString::new(sql.replace('\0', " ")).unwrap_or_default();
    let bytes = sql.as_bytes();
    let mut out = Vec::new();
    unsafe {
        let mut extra: pg_sys::core_yy_extra_type = std::mem::zeroed();
        let scanner = pg_sys::scanner_init(
            c_sql.as_ptr(),
            &mut extra,
            &raw const pg_sys::ScanKeywords,
            pg_sys::ScanKeywordTokens.as_ptr(),
        );
        let mut val: pg_sys::core_YYSTYPE = std::mem::zeroed();
        let mut loc: std::ffi::c_int = 0;
        while pg_sys::core_yylex(&mut val, &mut loc, scanner) != 0 {
            let at = loc as usize;
            let end = at + keyword.len();
            let word = bytes.get(at..end);
            let next = bytes.get(end).copied().unwrap_or(b' ');
            if word.is_some_and(|w| w.eq_ignore_ascii_case(keyword.as_bytes()))
                && !(next.is_ascii_alphanumeric() || next == b'_' || next == b'$' || next >= 0x80)
            {
                out.push(at);
            }
        }
        pg_sys::scanner_finish(scanner);
    }
    out
}

/// The relation a RangeVar names, resolved through search_path like the server does,
/// without a lock; InvalidOid if there is none.
///
/// # Safety
/// `rv` is a valid RangeVar; call inside a transaction.
pub unsafe fn relid_of(rv: *mut pg_sys::RangeVar) -> pg_sys::Oid {
    pg_sys::RangeVarGetRelidExtended(
        rv,
        pg_sys::NoLock as _,
        pg_sys::RVROption::RVR_MISSING_OK,
        None,
        std::ptr::null_mut(),
    )
}

/// A `GENERATED ALWAYS AS (…) VIRTUAL` column constraint (PostgreSQL 18 on; before, every
/// generated column is stored).
///
/// # Safety
/// `c` is a valid Constraint node.
#[allow(unused_variables)]
pub unsafe fn virtual_generated(c: *mut pg_sys::Constraint) -> bool {
    #[cfg(feature = "pg18")]
    {
        (*c).generated_kind as u8 == b'v'
    }
    #[cfg(not(feature = "pg18"))]
    {
        false
    }
}
