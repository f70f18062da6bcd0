//! Secrets out of the audit log: which string constants of a statement are
//! credentials, and the statement text with them replaced.
//!
//! The shell (`src/redact.rs`) knows from the parse tree *whether* a statement carries
//! secrets and what their values are, and cuts the text into tokens with the server's
//! own lexer (exact for every `standard_conforming_strings` / `backslash_quote`
//! setting, `E'…'`, `U&'…'` and dollar quotes). This module decides which tokens are
//! secret and checks the result: if a secret value can still be found in the redacted
//! text (the lexer saw the text under other settings than the parser did, say), the
//! whole text is withheld instead. A missed redaction never stores the secret.

/// One token of a statement: its byte range in the text and what it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub start: usize,
    /// Start of the next token (or the end of the text), trailing blanks excluded.
    pub end: usize,
    pub kind: Tok,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tok {
    /// A string constant in any of its forms.
    Str,
    /// A keyword or identifier, unquoted and lower-cased as the parser sees it.
    Word(String),
    /// Anything else (`=`, `,`, `(`, numbers, …), as written.
    Other(String),
}

/// Which string constants of a statement are secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// The constant right after `PASSWORD` (CREATE/ALTER ROLE and USER).
    Password,
    /// Every constant after `OPTIONS` (user mappings: all of it is credentials).
    AllOptions,
    /// The constant after a secret-looking option or setting name (`password`,
    /// `api_token`, `primary_conninfo`, …), optionally after `=` or `TO`
    /// (servers, wrappers, foreign tables, ALTER SYSTEM).
    SecretNames,
    /// The constant after `CONNECTION` (subscriptions: a libpq conninfo).
    Connection,
}

/// Words that stand next to a credential: in an option or setting name, or in code
/// pg_migsafe cannot see into (a DO block's body, a function's arguments:
/// `dblink_connect('… password=…')`).
const CREDENTIAL_WORDS: &[&str] = &[
    "password",
    "passwd",
    "passphrase",
    "secret",
    "token",
    "credential",
    "conninfo",
];

/// Does a text mention a credential word (case-insensitive)?
pub fn mentions_credentials(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    CREDENTIAL_WORDS.iter().any(|w| lower.contains(w))
}

/// Does an option or setting name look like it holds a secret (a credential word, or
/// `key` — too common in SQL text to count there, not in a name)?
pub fn secret_name(name: &str) -> bool {
    mentions_credentials(name) || name.to_ascii_lowercase().contains("key")
}

/// What replaces a secret string constant.
pub const REDACTED: &str = "'<redacted>'";

/// The text recorded for a statement whose secrets could not be located exactly.
pub fn withheld(command_tag: &str) -> String {
    format!("{command_tag} <statement text not recorded: it carries credentials>")
}

/// The indexes of the secret string constants among `tokens`.
pub fn secret_tokens(tokens: &[Token], rule: Rule) -> Vec<usize> {
    let mut out = Vec::new();
    let is_str = |i: usize| tokens.get(i).is_some_and(|t| t.kind == Tok::Str);
    // The string constant at i, or after one `=` / `TO` at i.
    let value_at = |i: usize| -> Option<usize> {
        match tokens.get(i).map(|t| &t.kind) {
            Some(Tok::Str) => Some(i),
            Some(Tok::Other(o)) if o == "=" => is_str(i + 1).then_some(i + 1),
            Some(Tok::Word(w)) if w == "to" => is_str(i + 1).then_some(i + 1),
            _ => None,
        }
    };
    match rule {
        Rule::AllOptions => {
            if let Some(first) = tokens
                .iter()
                .position(|t| t.kind == Tok::Word("options".into()))
            {
                out.extend((first..tokens.len()).filter(|&i| is_str(i)));
            }
        }
        Rule::Password | Rule::Connection | Rule::SecretNames => {
            for (i, t) in tokens.iter().enumerate() {
                let Tok::Word(w) = &t.kind else { continue };
                let trigger = match rule {
                    Rule::Password => w == "password",
                    Rule::Connection => w == "connection",
                    _ => secret_name(w),
                };
                if trigger {
                    if let Some(v) = value_at(i + 1) {
                        if !out.contains(&v) {
                            out.push(v);
                        }
                    }
                }
            }
        }
    }
    out
}

/// The ways a value can be spelled inside a string constant.
fn spellings(v: &str) -> Vec<String> {
    let mut s = vec![
        v.to_string(),
        v.replace('\'', "''"),
        v.replace('\\', "\\\\"),
    ];
    s.push(v.replace('\\', "\\\\").replace('\'', "''"));
    s.push(v.replace('\'', "\\'"));
    s.retain(|x| !x.is_empty());
    s.dedup();
    s
}

/// `text` with the secret tokens replaced, or None when that cannot be trusted: fewer
/// secret constants were found than the parse tree holds, or a secret value is still
/// in the result. `secrets` are the values that must not survive (for a user mapping,
/// whose option values are all replaced, those of its secret-looking options).
pub fn redact(text: &str, tokens: &[Token], rule: Rule, secrets: &[String]) -> Option<String> {
    let idx = secret_tokens(tokens, rule);
    if idx.len() < secrets.len() {
        return None;
    }
    let mut kept: Vec<&str> = Vec::new();
    let mut at = 0;
    for i in idx {
        let t = &tokens[i];
        if t.start < at || t.end > text.len() || t.start > t.end {
            return None;
        }
        kept.push(text.get(at..t.start)?);
        at = t.end;
    }
    kept.push(text.get(at..)?);
    let leaks = secrets
        .iter()
        .filter(|v| !v.is_empty())
        .flat_map(|v| spellings(v))
        .any(|sp| kept.iter().any(|k| k.contains(&sp)));
    (!leaks).then(|| kept.join(REDACTED))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A toy tokenizer for the tests (the server's lexer does this in the shell):
    /// single-quoted strings with '' escapes, words, and single punctuation.
    fn toks(text: &str) -> Vec<Token> {
        let b = text.as_bytes();
        let mut raw: Vec<(usize, Tok)> = Vec::new();
        let mut i = 0;
        while i < b.len() {
            let c = b[i];
            if c.is_ascii_whitespace() {
                i += 1;
            } else if c == b'\'' {
                let s = i;
                i += 1;
                while i < b.len() {
                    if b[i] == b'\'' && b.get(i + 1) == Some(&b'\'') {
                        i += 2;
                    } else if b[i] == b'\'' {
                        i += 1;
                        break;
                    } else {
                        i += 1;
                    }
                }
                raw.push((s, Tok::Str));
            } else if c.is_ascii_alphabetic() || c == b'_' {
                let s = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                    i += 1;
                }
                raw.push((s, Tok::Word(text[s..i].to_ascii_lowercase())));
            } else {
                raw.push((i, Tok::Other((c as char).to_string())));
                i += 1;
            }
        }
        let n = raw.len();
        (0..n)
            .map(|k| {
                let end = if k + 1 < n { raw[k + 1].0 } else { text.len() };
                let end = raw[k].0 + text[raw[k].0..end].trim_end().len();
                Token {
                    start: raw[k].0,
                    end,
                    kind: raw[k].1.clone(),
                }
            })
            .collect()
    }

    #[test]
    fn passwords_of_roles() {
        let t = "CREATE ROLE app LOGIN PASSWORD 'hunter2' VALID UNTIL '2030-01-01'";
        assert_eq!(
            redact(t, &toks(t), Rule::Password, &["hunter2".into()]).unwrap(),
            "CREATE ROLE app LOGIN PASSWORD '<redacted>' VALID UNTIL '2030-01-01'"
        );
        let t = "ALTER USER app WITH ENCRYPTED PASSWORD 'it''s'";
        assert_eq!(
            redact(t, &toks(t), Rule::Password, &["it's".into()]).unwrap(),
            "ALTER USER app WITH ENCRYPTED PASSWORD '<redacted>'"
        );
        // PASSWORD NULL: nothing secret, nothing to find.
        let t = "ALTER ROLE app PASSWORD NULL";
        assert_eq!(redact(t, &toks(t), Rule::Password, &[]).unwrap(), t);
    }

    #[test]
    fn user_mappings_lose_every_option_value() {
        let t = "CREATE USER MAPPING FOR app SERVER s OPTIONS (user 'u', password 'p4ss')";
        assert_eq!(
            redact(t, &toks(t), Rule::AllOptions, &["p4ss".into()]).unwrap(),
            "CREATE USER MAPPING FOR app SERVER s OPTIONS (user '<redacted>', password '<redacted>')"
        );
    }

    #[test]
    fn servers_and_settings_lose_secret_looking_values() {
        let t = "CREATE SERVER s FOREIGN DATA WRAPPER w OPTIONS (host 'db', api_token 'abc123', port '5432')";
        assert_eq!(
            redact(t, &toks(t), Rule::SecretNames, &["abc123".into()]).unwrap(),
            "CREATE SERVER s FOREIGN DATA WRAPPER w OPTIONS (host 'db', api_token '<redacted>', port '5432')"
        );
        let t = "ALTER SERVER s OPTIONS (SET password 'x9')";
        assert_eq!(
            redact(t, &toks(t), Rule::SecretNames, &["x9".into()]).unwrap(),
            "ALTER SERVER s OPTIONS (SET password '<redacted>')"
        );
        let t = "ALTER SYSTEM SET primary_conninfo = 'host=a password=b'";
        assert_eq!(
            redact(
                t,
                &toks(t),
                Rule::SecretNames,
                &["host=a password=b".into()]
            )
            .unwrap(),
            "ALTER SYSTEM SET primary_conninfo = '<redacted>'"
        );
        let t = "ALTER SYSTEM SET primary_conninfo TO 'host=a password=b'";
        assert!(redact(
            t,
            &toks(t),
            Rule::SecretNames,
            &["host=a password=b".into()]
        )
        .unwrap()
        .ends_with("TO '<redacted>'"));
        assert!(secret_name("sslpassword") && secret_name("API_KEY") && !secret_name("host"));
        // In SQL text, "key" is everywhere (PRIMARY KEY): only the credential words count.
        assert!(mentions_credentials(
            "DO $$ BEGIN PERFORM dblink_connect('PassWord=x') END $$"
        ));
        assert!(!mentions_credentials("CREATE TABLE t (id int PRIMARY KEY)"));
    }

    #[test]
    fn subscriptions_lose_the_connection_string() {
        let t = "CREATE SUBSCRIPTION sub CONNECTION 'host=p password=q' PUBLICATION pub WITH (connect = false)";
        assert_eq!(
            redact(t, &toks(t), Rule::Connection, &["host=p password=q".into()]).unwrap(),
            "CREATE SUBSCRIPTION sub CONNECTION '<redacted>' PUBLICATION pub WITH (connect = false)"
        );
    }

    #[test]
    fn anything_doubtful_withholds_the_text() {
        // The lexer found no constant where the parse tree has a password.
        let t = "CREATE ROLE app PASSWORD $$hunter2$$";
        let no_str: Vec<Token> = toks(t)
            .into_iter()
            .map(|mut k| {
                if k.kind == Tok::Str {
                    k.kind = Tok::Other("?".into())
                }
                k
            })
            .collect();
        assert_eq!(
            redact(t, &no_str, Rule::Password, &["hunter2".into()]),
            None
        );
        // The value is still there after redaction (elsewhere in the text).
        let t = "CREATE ROLE hunter2 PASSWORD 'hunter2'";
        assert_eq!(
            redact(t, &toks(t), Rule::Password, &["hunter2".into()]),
            None
        );
        // Doubled quotes and backslashes are looked for too.
        let t = "CREATE ROLE a PASSWORD 'x' COMMENT 'it''s'";
        assert_eq!(
            redact(t, &toks(t), Rule::Password, &["x".into(), "it's".into()]),
            None
        );
        assert_eq!(
            withheld("CREATE ROLE"),
            "CREATE ROLE <statement text not recorded: it carries credentials>"
        );
    }
}
