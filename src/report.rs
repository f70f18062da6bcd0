//! Raising our own ERRORs and WARNINGs with pg_migsafe's SQLSTATEs.
//!
//! pgrx's `ereport!` only knows PostgreSQL's predefined SQLSTATEs, so refusals go
//! through elog.c directly. Everything is copied into palloc'd memory first so that no
//! Rust value with a destructor is alive when `errfinish` longjmps out of an ERROR.

use crate::engine::policy::Report;
use std::ffi::{c_char, c_int, CString};

/// SQLSTATE of a refusal: `MS001` (class MS, implementation-defined).
pub const SQLSTATE_REFUSED: &str = "MS001";
/// SQLSTATE of a warning: `MS002`.
pub const SQLSTATE_WARNING: &str = "MS002";
/// SQLSTATE of the NOTICE that a phase approved a statement: `MS003`.
pub const SQLSTATE_APPROVED: &str = "MS003";

pub const fn make_sqlstate(code: &str) -> c_int {
    let b = code.as_bytes();
    let mut out = 0;
    let mut i = 0;
    while i < 5 {
        out += ((b[i] as c_int - b'0' as c_int) & 0x3F) << (6 * i);
        i += 1;
    }
    out
}

/// The five characters of an encoded SQLSTATE (`ErrorData.sqlerrcode`).
pub fn unpack_sqlstate(code: c_int) -> String {
    (0..5)
        .map(|i| (((code >> (6 * i)) & 0x3F) as u8 + b'0') as char)
        .collect()
}

unsafe extern "C-unwind" {
    fn errstart(elevel: c_int, domain: *const c_char) -> bool;
    fn errcode(sqlerrcode: c_int) -> c_int;
    fn errmsg(fmt: *const c_char, ...) -> c_int;
    fn errdetail(fmt: *const c_char, ...) -> c_int;
    fn errhint(fmt: *const c_char, ...) -> c_int;
    fn errfinish(filename: *const c_char, lineno: c_int, funcname: *const c_char);
    #[link_name = "pstrdup"]
    fn raw_pstrdup(s: *const c_char) -> *mut c_char;
}

/// A report ready to raise: strings in the current memory context.
#[repr(C)]
pub struct PgReport {
    pub level: c_int,
    pub sqlstate: c_int,
    pub message: *mut c_char,
    pub detail: *mut c_char,
    pub hint: *mut c_char,
}

fn palloc_str(s: &str) -> *mut c_char {
    let c = CString::new(s.replace('\0', " ")).unwrap_or_default();
    // SAFETY: pstrdup copies into the current memory context.
    unsafe { raw_pstrdup(c.as_ptr()) }
}

impl PgReport {
    pub fn new(level: u32, sqlstate: &str, r: &Report) -> Self {
        PgReport {
            level: level as c_int,
            sqlstate: make_sqlstate(sqlstate),
            message: palloc_str(&r.message),
            detail: if r.detail.is_empty() {
                std::ptr::null_mut()
            } else {
                palloc_str(&r.detail)
            },
            hint: if r.hint.is_empty() {
                std::ptr::null_mut()
            } else {
                palloc_str(&r.hint)
            },
        }
    }
}

/// Raises the report. For ERROR this does not return.
///
/// # Safety
/// The caller's frame and its callers up to the nearest PostgreSQL error boundary must
/// hold no Rust values with pending destructors.
pub unsafe fn raise(r: &PgReport) {
    const FMT: &std::ffi::CStr = c"%s";
    if errstart(r.level, std::ptr::null()) {
        errcode(r.sqlstate);
        errmsg(FMT.as_ptr(), r.message);
        if !r.detail.is_null() {
            errdetail(FMT.as_ptr(), r.detail);
        }
        if !r.hint.is_null() {
            errhint(FMT.as_ptr(), r.hint);
        }
        errfinish(c"pg_migsafe".as_ptr(), 0, c"pg_migsafe".as_ptr());
    }
}

/// A line for the server log only (LOG_SERVER_ONLY: never sent to the client), for
/// audit records that could not be queued. Safe in commit and abort callbacks.
///
/// # Safety
/// Must be called in a backend with elog initialised.
pub unsafe fn log_server_only(line: &std::ffi::CStr) {
    const FMT: &std::ffi::CStr = c"%s";
    if errstart(pgrx::pg_sys::LOG_SERVER_ONLY as c_int, std::ptr::null()) {
        errmsg(FMT.as_ptr(), line.as_ptr());
        errfinish(c"pg_migsafe".as_ptr(), 0, c"pg_migsafe".as_ptr());
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn sqlstate_encoding_matches_postgres() {
        // MAKE_SQLSTATE('4','2','5','0','1') == 42501 encoded
        let expect = 4 + (2 << 6) + (5 << 12) + (1 << 24);
        assert_eq!(super::make_sqlstate("42501"), expect);
        for code in ["42501", "MS001", "55P03", "XX000", "22023"] {
            assert_eq!(super::unpack_sqlstate(super::make_sqlstate(code)), code);
        }
    }
}
