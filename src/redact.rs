//! Secrets out of the audit log, the shell: which statements carry credentials (read
//! from the parse tree by `stmt::secrets`), their values, and the text cut into tokens
//! by the server's own lexer. What is redacted and how the result is checked is
//! `engine::redact`.
//!
//! Credentials: `PASSWORD '…'` of CREATE/ALTER ROLE and USER, every option value of
//! CREATE/ALTER USER MAPPING, secret-looking options (`password`, `…token`, `…key`, …)
//! of foreign servers, wrappers and tables, secret-looking settings of ALTER SYSTEM
//! (`primary_conninfo`, `ssl_passphrase_command`, …), and the CONNECTION string of
//! CREATE/ALTER SUBSCRIPTION.

use crate::engine::redact::{mentions_credentials, redact, secret_name, withheld, Tok, Token};
use crate::pgutil::cstr;
use pgrx::pg_sys::{self, Node};
use pgrx::PgList;
use pgrx::PgTryBuilder;
use std::ffi::CString;

/// The start of every token of `text`, cut by the server's lexer with
/// `standard_conforming_strings` as given. None if the lexer fails.
fn token_starts(c: &std::ffi::CStr, scs: bool) -> Option<Vec<usize>> {
    // The scanner keeps a pointer to `extra` and reads it while lexing: a heap value
    // reached only through that raw pointer.
    let extra: *mut pg_sys::core_yy_extra_type = Box::into_raw(Box::default());
    let r = PgTryBuilder::new(|| unsafe {
        let scanner = pg_sys::scanner_init(
            c.as_ptr(),
            extra,
            &pg_sys::ScanKeywords,
            std::ptr::addr_of!(pg_sys::ScanKeywordTokens) as *const u16,
        );
        (*extra).standard_conforming_strings = scs;
        let mut starts = Vec::new();
        loop {
            let mut lval: pg_sys::core_YYSTYPE = Default::default();
            let mut loc: std::ffi::c_int = 0;
            let tok = pg_sys::core_yylex(&mut lval, &mut loc, scanner);
            if tok == 0 {
                break;
            }
            starts.push(loc.max(0) as usize);
        }
        pg_sys::scanner_finish(scanner);
        Some(starts)
    })
    .catch_others(|_| None)
    .execute();
    // SAFETY: allocated above; the scanner is finished (or its memory context gone).
    drop(unsafe { Box::from_raw(extra) });
    r
}

/// The tokens of `text` as the server's lexer cuts them. The statement was parsed
/// with whatever `standard_conforming_strings` held then (a `SET` earlier in the same
/// query string may have changed it since): the text is cut both ways, and None comes
/// back unless both agree (or the lexer fails), so that the caller withholds the text.
fn tokens(text: &str) -> Option<Vec<Token>> {
    let c = CString::new(text).ok()?;
    let starts = token_starts(&c, true)?;
    if token_starts(&c, false)? != starts {
        return None;
    }
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(starts.len());
    for (k, &s) in starts.iter().enumerate() {
        let next = starts.get(k + 1).copied().unwrap_or(text.len());
        if s > next || next > text.len() {
            return None;
        }
        let end = s + text.get(s..next)?.trim_end().len();
        let kind = classify(&b[s..end], text.get(s..end)?);
        out.push(Token {
            start: s,
            end,
            kind,
        });
    }
    Some(out)
}

/// What a token is, from how it starts.
fn classify(b: &[u8], t: &str) -> Tok {
    let lower: Vec<u8> = b.iter().take(3).map(|c| c.to_ascii_lowercase()).collect();
    let is_str = match lower.as_slice() {
        [b'\'', ..] => true,
        [b'e' | b'n' | b'b' | b'x', b'\'', ..] => true,
        [b'u', b'&', b'\''] => true,
        [b'$', c, ..] => !c.is_ascii_digit(),
        _ => false,
    };
    if is_str {
        return Tok::Str;
    }
    match b.first() {
        Some(b'"') => {
            let inner = t
                .strip_prefix('"')
                .and_then(|r| r.rsplit_once('"').map(|x| x.0))
                .unwrap_or("");
            Tok::Word(inner.replace("\"\"", "\""))
        }
        Some(c) if c.is_ascii_alphabetic() || *c == b'_' || *c >= 0x80 => {
            let w: String = t
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == '$')
                .collect();
            Tok::Word(w.to_ascii_lowercase())
        }
        _ => Tok::Other(t.to_string()),
    }
}

/// The text to record for a statement: `text` unless the statement carries
/// credentials, then with them replaced (or withheld entirely when they cannot be
/// located exactly); and whether it carries credentials (its error message, which may
/// quote them, is then not recorded either).
///
/// # Safety
/// `stmt` is the statement's parse tree (raw or utility node); inside a transaction.
pub unsafe fn statement(stmt: *mut Node, text: &str) -> (String, bool) {
    let Some((rule, values)) = crate::stmt::secrets::secrets(stmt) else {
        return (text.to_string(), false);
    };
    if let Some(r) = tokens(text).and_then(|t| redact(text, &t, rule, &values)) {
        return (r, true);
    }
    let tag = cstr(pg_sys::GetCommandTagName(pg_sys::CreateCommandTag(stmt))).unwrap_or_default();
    (withheld(&tag), true)
}

/// What stands for a statement of another session that may hold credentials.
const NOT_RECORDED: &str = "<query text not recorded: it could not be checked for credentials>";

/// A query text seen elsewhere (pg_stat_activity: lock blockers, long-running
/// migrations). Each statement that carries credentials by its parse tree is redacted;
/// any other statement that mentions a credential word anywhere (a DO block, a
/// function call's arguments) is not recorded; text that does not parse (cut short by
/// track_activity_query_size) is kept only if no such word appears in it.
pub fn query_text(q: &str) -> String {
    let parsed = PgTryBuilder::new(|| unsafe {
        let c = CString::new(q).ok()?;
        #[cfg(feature = "pg13")]
        let l = pg_sys::raw_parser(c.as_ptr());
        #[cfg(not(feature = "pg13"))]
        let l = pg_sys::raw_parser(c.as_ptr(), pg_sys::RawParseMode::RAW_PARSE_DEFAULT);
        Some(l)
    })
    .catch_others(|_| None)
    .execute();
    let Some(list) = parsed else {
        let lower = q.to_ascii_lowercase();
        let doubtful =
            secret_name(&lower) || ["connection", "mapping"].iter().any(|w| lower.contains(w));
        return if doubtful {
            NOT_RECORDED.into()
        } else {
            q.to_string()
        };
    };
    let stmts = unsafe { PgList::<pg_sys::RawStmt>::from_pg(list) };
    let mut out = Vec::new();
    let mut changed = false;
    for r in stmts.iter_ptr() {
        unsafe {
            let slice =
                crate::pgutil::statement_slice(q.as_bytes(), (*r).stmt_location, (*r).stmt_len);
            if crate::stmt::secrets::secrets((*r).stmt).is_some() {
                out.push(statement((*r).stmt, &slice).0);
                changed = true;
            } else if mentions_credentials(&slice) {
                out.push(NOT_RECORDED.to_string());
                changed = true;
            } else {
                out.push(slice);
            }
        }
    }
    if changed {
        out.join(";")
    } else {
        q.to_string()
    }
}
