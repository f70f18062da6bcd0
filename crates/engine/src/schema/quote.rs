//! Quoting of identifiers and literals, and the identity strings that key the model.
//!
//! Two spellings of a name are used, on purpose:
//!
//! * **Identity keys** (the keys of the model's maps, `Change::identity`,
//!   `Statement::identity`) always quote every part: `"public"."my table"`,
//!   `"public"."users"."id"`. They never depend on a keyword list, so the same object
//!   has the same key whatever PostgreSQL version wrote the snapshot, and every key is
//!   itself valid SQL. [`identity`] builds them, [`parse_identity`] splits them.
//! * **Generated DDL** uses [`quote_ident`], which follows PostgreSQL's own
//!   `quote_ident()` (`quote_identifier()` in ruleutils.c) exactly: a name is left bare
//!   only when it starts with `[a-z_]`, continues with `[a-z0-9_]` and is not a
//!   reserved, column-name or type/function-name keyword of PostgreSQL 15; anything
//!   else (upper case, spaces, quotes, `$`, unicode, keywords) is double-quoted with
//!   inner `"` doubled. The result is what `pg_dump` writes, so generated scripts read
//!   like hand-written ones.
//!
//! Literals use [`quote_literal`], which also mirrors the server function: single
//! quotes are doubled, and a string containing a backslash becomes an `E'…'` literal
//! with the backslashes doubled, so it reads back identically whatever
//! `standard_conforming_strings` says.

use thiserror::Error;

/// PostgreSQL 15 keywords that are *not* `UNRESERVED_KEYWORD`
/// (`src/include/parser/kwlist.h`): `quote_ident` quotes exactly these.
const NON_UNRESERVED_KEYWORDS: &[&str] = &[
    "all",
    "analyse",
    "analyze",
    "and",
    "any",
    "array",
    "as",
    "asc",
    "asymmetric",
    "authorization",
    "between",
    "bigint",
    "binary",
    "bit",
    "boolean",
    "both",
    "case",
    "cast",
    "char",
    "character",
    "check",
    "coalesce",
    "collate",
    "collation",
    "column",
    "concurrently",
    "constraint",
    "create",
    "cross",
    "current_catalog",
    "current_date",
    "current_role",
    "current_schema",
    "current_time",
    "current_timestamp",
    "current_user",
    "dec",
    "decimal",
    "default",
    "deferrable",
    "desc",
    "distinct",
    "do",
    "else",
    "end",
    "except",
    "exists",
    "extract",
    "false",
    "fetch",
    "float",
    "for",
    "foreign",
    "freeze",
    "from",
    "full",
    "grant",
    "greatest",
    "group",
    "grouping",
    "having",
    "ilike",
    "in",
    "initially",
    "inner",
    "inout",
    "int",
    "integer",
    "intersect",
    "interval",
    "into",
    "is",
    "isnull",
    "join",
    "lateral",
    "leading",
    "least",
    "left",
    "like",
    "limit",
    "localtime",
    "localtimestamp",
    "national",
    "natural",
    "nchar",
    "none",
    "normalize",
    "not",
    "notnull",
    "null",
    "nullif",
    "numeric",
    "offset",
    "on",
    "only",
    "or",
    "order",
    "out",
    "outer",
    "overlaps",
    "overlay",
    "placing",
    "position",
    "precision",
    "primary",
    "real",
    "references",
    "returning",
    "right",
    "row",
    "select",
    "session_user",
    "setof",
    "similar",
    "smallint",
    "some",
    "substring",
    "symmetric",
    "table",
    "tablesample",
    "then",
    "time",
    "timestamp",
    "to",
    "trailing",
    "treat",
    "trim",
    "true",
    "union",
    "unique",
    "user",
    "using",
    "values",
    "varchar",
    "variadic",
    "verbose",
    "when",
    "where",
    "window",
    "with",
    "xmlattributes",
    "xmlconcat",
    "xmlelement",
    "xmlexists",
    "xmlforest",
    "xmlnamespaces",
    "xmlparse",
    "xmlpi",
    "xmlroot",
    "xmlserialize",
    "xmltable",
];

/// Whether `word` is a keyword that `quote_ident` must quote.
pub fn is_quoted_keyword(word: &str) -> bool {
    NON_UNRESERVED_KEYWORDS.binary_search(&word).is_ok()
}

/// PostgreSQL's `quote_ident()`: bare when safe, otherwise double-quoted with inner
/// double quotes doubled. See the module documentation for the exact rule.
pub fn quote_ident(name: &str) -> String {
    let mut chars = name.chars();
    let safe = match chars.next() {
        Some(c) if c.is_ascii_lowercase() || c == '_' => {
            chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        }
        _ => false,
    };
    if safe && !is_quoted_keyword(name) {
        name.to_string()
    } else {
        quote_always(name)
    }
}

/// Always double-quotes, doubling inner double quotes: `my "x"` → `"my ""x"""`.
pub fn quote_always(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The identity key of an object named by `parts` (schema first): every part
/// double-quoted, joined by dots, e.g. `"public"."my table"`.
pub fn identity(parts: &[&str]) -> String {
    parts
        .iter()
        .map(|p| quote_always(p))
        .collect::<Vec<_>>()
        .join(".")
}

/// The name for DDL: every part through [`quote_ident`], joined by dots.
pub fn qualified(parts: &[&str]) -> String {
    parts
        .iter()
        .map(|p| quote_ident(p))
        .collect::<Vec<_>>()
        .join(".")
}

/// PostgreSQL's `quote_literal()`.
pub fn quote_literal(s: &str) -> String {
    let body = s.replace('\'', "''");
    if s.contains('\\') {
        format!("E'{}'", body.replace('\\', "\\\\"))
    } else {
        format!("'{body}'")
    }
}

/// `NULL` or the quoted literal.
pub fn quote_nullable(s: Option<&str>) -> String {
    s.map_or_else(|| "NULL".to_string(), quote_literal)
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum IdentityError {
    #[error("identity {0:?} is not a dot-separated list of double-quoted names")]
    Malformed(String),
}

/// Splits an always-quoted identity (`"public"."my ""t"""`) into its names.
/// Trailing text after the last quoted name (a function's argument list, see
/// [`crate::schema::model::Function`]) is returned as the second element.
pub fn parse_identity_with_tail(s: &str) -> Result<(Vec<String>, String), IdentityError> {
    let err = || IdentityError::Malformed(s.to_string());
    let mut parts = Vec::new();
    let mut chars = s.char_indices().peekable();
    loop {
        match chars.next() {
            Some((_, '"')) => {}
            _ => return Err(err()),
        }
        let mut part = String::new();
        loop {
            match chars.next() {
                Some((_, '"')) => {
                    if matches!(chars.peek(), Some((_, '"'))) {
                        chars.next();
                        part.push('"');
                    } else {
                        break;
                    }
                }
                Some((_, c)) => part.push(c),
                None => return Err(err()),
            }
        }
        parts.push(part);
        match chars.peek() {
            Some((_, '.')) => {
                chars.next();
            }
            Some((i, _)) => return Ok((parts, s[*i..].to_string())),
            None => return Ok((parts, String::new())),
        }
    }
}

/// Splits an always-quoted identity into its names; any trailing text is an error.
pub fn parse_identity(s: &str) -> Result<Vec<String>, IdentityError> {
    match parse_identity_with_tail(s)? {
        (parts, tail) if tail.is_empty() => Ok(parts),
        _ => Err(IdentityError::Malformed(s.to_string())),
    }
}

/// The DDL spelling of an identity key: `"public"."users"` → `public.users`,
/// `"public"."My T"` → `public."My T"`. A malformed key is returned unchanged (keys are
/// built quoted, so that is still valid SQL for a well-formed one).
pub fn ddl_name(identity_key: &str) -> String {
    match parse_identity_with_tail(identity_key) {
        Ok((parts, tail)) => {
            let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
            format!("{}{}", qualified(&refs), tail)
        }
        Err(_) => identity_key.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyword_list_is_sorted_for_binary_search() {
        let mut sorted = NON_UNRESERVED_KEYWORDS.to_vec();
        sorted.sort_unstable();
        assert_eq!(sorted, NON_UNRESERVED_KEYWORDS);
        assert_eq!(NON_UNRESERVED_KEYWORDS.len(), 151);
    }

    #[test]
    fn quote_ident_matches_postgres() {
        assert_eq!(quote_ident("users"), "users");
        assert_eq!(quote_ident("_a1"), "_a1");
        assert_eq!(quote_ident("my table"), "\"my table\"");
        assert_eq!(quote_ident("Users"), "\"Users\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(quote_ident("\""), "\"\"\"\"");
        assert_eq!(quote_ident("1abc"), "\"1abc\"");
        assert_eq!(quote_ident("a$b"), "\"a$b\"");
        assert_eq!(quote_ident("größe"), "\"größe\"");
        assert_eq!(quote_ident("表"), "\"表\"");
        assert_eq!(quote_ident(""), "\"\"");
        // Reserved, column-name and type/function-name keywords are quoted…
        assert_eq!(quote_ident("select"), "\"select\"");
        assert_eq!(quote_ident("user"), "\"user\"");
        assert_eq!(quote_ident("integer"), "\"integer\"");
        assert_eq!(quote_ident("left"), "\"left\"");
        // …unreserved keywords are not.
        assert_eq!(quote_ident("name"), "name");
        assert_eq!(quote_ident("text"), "text");
        assert_eq!(quote_ident("comment"), "comment");
    }

    #[test]
    fn literals() {
        assert_eq!(quote_literal("abc"), "'abc'");
        assert_eq!(quote_literal("it's"), "'it''s'");
        assert_eq!(quote_literal("a\\b"), "E'a\\\\b'");
        assert_eq!(quote_literal("'\\'"), "E'''\\\\'''");
        assert_eq!(quote_literal("ü \"x\""), "'ü \"x\"'");
        assert_eq!(quote_nullable(None), "NULL");
        assert_eq!(quote_nullable(Some("x")), "'x'");
    }

    #[test]
    fn identities_round_trip() {
        let names = ["public", "my \"odd\" Table.x", "ünï", ""];
        let key = identity(&names);
        assert_eq!(key, "\"public\".\"my \"\"odd\"\" Table.x\".\"ünï\".\"\"");
        assert_eq!(parse_identity(&key).unwrap(), names);
        assert_eq!(
            ddl_name(&key),
            "public.\"my \"\"odd\"\" Table.x\".\"ünï\".\"\""
        );
        assert_eq!(
            parse_identity_with_tail("\"s\".\"f\"(integer, text)").unwrap(),
            (
                vec!["s".to_string(), "f".to_string()],
                "(integer, text)".into()
            )
        );
        assert_eq!(ddl_name("\"S\".\"f\"(integer)"), "\"S\".f(integer)");
        assert!(parse_identity("public.users").is_err());
        assert!(parse_identity("\"a").is_err());
        assert!(parse_identity("\"a\"x").is_err());
        assert_eq!(ddl_name("not quoted"), "not quoted");
        assert_eq!(qualified(&["public", "Order"]), "public.\"Order\"");
    }
}
