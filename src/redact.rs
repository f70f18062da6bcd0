//! Secrets out of the audit log, the shell: which statements carry credentials (read
//! from the parse tree), their values, and the text cut into tokens by the server's own
//! lexer. What is redacted and how the result is checked is `engine::redact`.
//!
//! Credentials: `PASSWORD '…'` of CREATE/ALTER ROLE and USER, every option value of
//! CREATE/ALTER USER MAPPING, secret-looking options (`password`, `…token`, `…key`, …)
//! of foreign servers, wrappers and tables, secret-looking settings of ALTER SYSTEM
//! (`primary_conninfo`, `ssl_passphrase_command`, …), and the CONNECTION string of
//! CREATE/ALTER SUBSCRIPTION.

use crate::engine::redact::{
    mentions_credentials, redact, secret_name, withheld, Rule, Tok, Token,
};
use crate::pgutil::cstr;
use pgrx::pg_sys::{self, Node, NodeTag};
use pgrx::PgList;
use pgrx::PgTryBuilder;
use std::ffi::CString;

/// The (name, string value) of each DefElem of an option list.
unsafe fn options(l: *mut pg_sys::List) -> Vec<(String, Option<String>)> {
    PgList::<Node>::from_pg(l)
        .iter_ptr()
        .filter(|n| !n.is_null() && (**n).type_ == NodeTag::T_DefElem)
        .map(|n| {
            let d = n as *mut pg_sys::DefElem;
            (
                cstr((*d).defname).unwrap_or_default(),
                crate::pgutil::string_node((*d).arg),
            )
        })
        .collect()
}

/// The values a `SET name = …` (of ALTER SYSTEM, ALTER ROLE/DATABASE … SET, a
/// function's SET clause) gives a secret-looking setting, as text; empty for other
/// settings. A number is a value too: it is no string constant the redaction could
/// replace, so the statement's text is then withheld whole.
unsafe fn set_values(v: *mut pg_sys::VariableSetStmt) -> Vec<String> {
    if v.is_null() || !secret_name(&cstr((*v).name).unwrap_or_default()) {
        return vec![];
    }
    PgList::<Node>::from_pg((*v).args)
        .iter_ptr()
        .filter(|a| !a.is_null() && (**a).type_ == NodeTag::T_A_Const)
        .filter_map(|a| {
            let c = a as *mut pg_sys::A_Const;
            #[cfg(any(feature = "pg13", feature = "pg14"))]
            let s = match (*c).val.type_ {
                NodeTag::T_String | NodeTag::T_Float => cstr((*c).val.val.str_),
                NodeTag::T_Integer => Some((*c).val.val.ival.to_string()),
                _ => None,
            };
            #[cfg(not(any(feature = "pg13", feature = "pg14")))]
            let s = match (*c).val.node.type_ {
                _ if (*c).isnull => None,
                NodeTag::T_String => cstr((*c).val.sval.sval),
                NodeTag::T_Float => cstr((*c).val.fval.fval),
                NodeTag::T_Integer => Some((*c).val.ival.ival.to_string()),
                _ => None,
            };
            s
        })
        .collect()
}

/// The secret-looking settings of a function's options (`SET name = …` clauses).
unsafe fn function_set_values(l: *mut pg_sys::List) -> Vec<String> {
    PgList::<Node>::from_pg(l)
        .iter_ptr()
        .filter(|n| !n.is_null() && (**n).type_ == NodeTag::T_DefElem)
        .filter_map(|n| {
            let d = n as *mut pg_sys::DefElem;
            let set = cstr((*d).defname).as_deref() == Some("set")
                && !(*d).arg.is_null()
                && (*(*d).arg).type_ == NodeTag::T_VariableSetStmt;
            set.then(|| set_values((*d).arg as *mut pg_sys::VariableSetStmt))
        })
        .flatten()
        .collect()
}

/// Whether a statement carries credentials: the rule that finds them in its text and
/// their values (to check that none is left).
unsafe fn secrets(stmt: *mut Node) -> Option<(Rule, Vec<String>)> {
    if stmt.is_null() {
        return None;
    }
    let named = |opts: Vec<(String, Option<String>)>| -> Option<(Rule, Vec<String>)> {
        let v: Vec<String> = opts
            .into_iter()
            .filter(|(n, _)| secret_name(n))
            .filter_map(|(_, v)| v)
            .collect();
        (!v.is_empty()).then_some((Rule::SecretNames, v))
    };
    match (*stmt).type_ {
        NodeTag::T_CreateRoleStmt | NodeTag::T_AlterRoleStmt => {
            let l = if (*stmt).type_ == NodeTag::T_CreateRoleStmt {
                (*(stmt as *mut pg_sys::CreateRoleStmt)).options
            } else {
                (*(stmt as *mut pg_sys::AlterRoleStmt)).options
            };
            let v: Vec<String> = options(l)
                .into_iter()
                .filter(|(n, _)| n == "password")
                .filter_map(|(_, v)| v)
                .collect();
            (!v.is_empty()).then_some((Rule::Password, v))
        }
        NodeTag::T_CreateUserMappingStmt | NodeTag::T_AlterUserMappingStmt => {
            let l = if (*stmt).type_ == NodeTag::T_CreateUserMappingStmt {
                (*(stmt as *mut pg_sys::CreateUserMappingStmt)).options
            } else {
                (*(stmt as *mut pg_sys::AlterUserMappingStmt)).options
            };
            let opts = options(l);
            if opts.iter().all(|(_, v)| v.is_none()) {
                return None;
            }
            // Every value is replaced; the secret-looking ones must not survive.
            let v: Vec<String> = opts
                .into_iter()
                .filter(|(n, _)| secret_name(n))
                .filter_map(|(_, v)| v)
                .collect();
            Some((Rule::AllOptions, v))
        }
        NodeTag::T_CreateForeignServerStmt => named(options(
            (*(stmt as *mut pg_sys::CreateForeignServerStmt)).options,
        )),
        NodeTag::T_AlterForeignServerStmt => named(options(
            (*(stmt as *mut pg_sys::AlterForeignServerStmt)).options,
        )),
        NodeTag::T_CreateFdwStmt => named(options((*(stmt as *mut pg_sys::CreateFdwStmt)).options)),
        NodeTag::T_AlterFdwStmt => named(options((*(stmt as *mut pg_sys::AlterFdwStmt)).options)),
        NodeTag::T_CreateForeignTableStmt => {
            let f = stmt as *mut pg_sys::CreateForeignTableStmt;
            let mut opts = options((*f).options);
            // column options: CREATE FOREIGN TABLE t (c int OPTIONS (…))
            for e in PgList::<Node>::from_pg((*f).base.tableElts).iter_ptr() {
                if !e.is_null() && (*e).type_ == NodeTag::T_ColumnDef {
                    opts.extend(options((*(e as *mut pg_sys::ColumnDef)).fdwoptions));
                }
            }
            named(opts)
        }
        NodeTag::T_ImportForeignSchemaStmt => named(options(
            (*(stmt as *mut pg_sys::ImportForeignSchemaStmt)).options,
        )),
        NodeTag::T_AlterTableStmt => {
            // ALTER FOREIGN TABLE … OPTIONS (…), ALTER COLUMN … OPTIONS (…)
            let mut opts = Vec::new();
            for cmd in PgList::<pg_sys::AlterTableCmd>::from_pg(
                (*(stmt as *mut pg_sys::AlterTableStmt)).cmds,
            )
            .iter_ptr()
            {
                use pg_sys::AlterTableType as A;
                let st = (*cmd).subtype;
                let def = (*cmd).def;
                if (st == A::AT_GenericOptions || st == A::AT_AlterColumnGenericOptions)
                    && !def.is_null()
                    && (*def).type_ == NodeTag::T_List
                {
                    opts.extend(options(def as *mut pg_sys::List));
                } else if st == A::AT_AddColumn
                    && !def.is_null()
                    && (*def).type_ == NodeTag::T_ColumnDef
                {
                    // ALTER FOREIGN TABLE … ADD COLUMN c int OPTIONS (…)
                    opts.extend(options((*(def as *mut pg_sys::ColumnDef)).fdwoptions));
                }
            }
            named(opts)
        }
        NodeTag::T_CreateSubscriptionStmt => {
            let c = cstr((*(stmt as *mut pg_sys::CreateSubscriptionStmt)).conninfo)?;
            Some((Rule::Connection, vec![c]))
        }
        NodeTag::T_AlterSubscriptionStmt => {
            let c = cstr((*(stmt as *mut pg_sys::AlterSubscriptionStmt)).conninfo)?;
            Some((Rule::Connection, vec![c]))
        }
        NodeTag::T_AlterSystemStmt => {
            let v = set_values((*(stmt as *mut pg_sys::AlterSystemStmt)).setstmt);
            (!v.is_empty()).then_some((Rule::SecretNames, v))
        }
        NodeTag::T_AlterRoleSetStmt => {
            let v = set_values((*(stmt as *mut pg_sys::AlterRoleSetStmt)).setstmt);
            (!v.is_empty()).then_some((Rule::SecretNames, v))
        }
        NodeTag::T_AlterDatabaseSetStmt => {
            let v = set_values((*(stmt as *mut pg_sys::AlterDatabaseSetStmt)).setstmt);
            (!v.is_empty()).then_some((Rule::SecretNames, v))
        }
        NodeTag::T_AlterFunctionStmt => {
            let v = function_set_values((*(stmt as *mut pg_sys::AlterFunctionStmt)).actions);
            (!v.is_empty()).then_some((Rule::SecretNames, v))
        }
        NodeTag::T_CreateFunctionStmt => {
            let v = function_set_values((*(stmt as *mut pg_sys::CreateFunctionStmt)).options);
            (!v.is_empty()).then_some((Rule::SecretNames, v))
        }
        _ => None,
    }
}

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
    let Some((rule, values)) = secrets(stmt) else {
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
            if secrets((*r).stmt).is_some() {
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
