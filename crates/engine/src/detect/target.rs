//! What an object a statement names is, here and now: the one fact every family of
//! rules starts from.
//!
//! The statement layer resolves the name as the server would (search_path, the
//! statement's own lock) and says which of four cases it met. The families below
//! decide; they never resolve.

use crate::policy::Finding;
use crate::rules::{known, RuleId};

/// One object named by a statement. Each case carries its display form, e.g.
/// `table public.users`, `column public.users.email`.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// It exists, and existed before this transaction (or this `check()` input).
    Existing(String),
    /// Created earlier in this transaction or input, or temporary: no client can
    /// depend on it yet, so no rule applies to it.
    New(String),
    /// Lives in schema migsafe (or is schema migsafe): pg_migsafe's own objects.
    Protected(String),
    /// The name does not resolve here. `applies`: `check()` of an input that did
    /// not create it, so it is taken to exist where the migration will run.
    Missing { display: String, applies: bool },
}

impl Target {
    /// The display form, whatever the case.
    pub fn display(&self) -> &str {
        match self {
            Target::Existing(d) | Target::New(d) | Target::Protected(d) => d,
            Target::Missing { display, .. } => display,
        }
    }

    /// Is `rule` about this object? Existing objects and missing ones a `check()`
    /// input did not create: yes. New objects: no. Protected objects are judged by
    /// the caller (most families refuse them with `protect-schema` first).
    pub fn breaks(&self, rule: RuleId) -> Option<Finding> {
        match self {
            Target::Existing(d) | Target::Protected(d) => Some(Finding::new(known(rule), d)),
            Target::Missing {
                display,
                applies: true,
            } => Some(Finding::new(known(rule), display)),
            Target::New(_) | Target::Missing { .. } => None,
        }
    }

    /// `protect-schema` for a protected object, else `rule` as [`Target::breaks`].
    pub fn guarded(&self, rule: RuleId) -> Option<Finding> {
        match self {
            Target::Protected(d) => Some(Finding::new(known(RuleId::ProtectSchema), d)),
            _ => self.breaks(rule),
        }
    }
}

/// A display form without its kind: `table public.users` → `public.users`,
/// `materialized view public.v` → `public.v`.
pub fn identity(display: &str) -> &str {
    for kind in ["materialized view ", "foreign table "] {
        if let Some(rest) = display.strip_prefix(kind) {
            return rest;
        }
    }
    display.split_once(' ').map_or(display, |x| x.1)
}

/// The ids of a list of findings, for the families' tests.
#[cfg(test)]
pub(crate) fn ids(fs: &[Finding]) -> Vec<&'static str> {
    fs.iter().map(|f| f.rule.id.as_str()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_objects_that_exist_where_the_migration_runs_break_a_rule() {
        let t = |t: Target| t.breaks(RuleId::DropTable).map(|f| f.object);
        assert_eq!(
            t(Target::Existing("table public.a".into())).as_deref(),
            Some("table public.a")
        );
        assert_eq!(t(Target::New("table public.a".into())), None);
        let missing = |applies| Target::Missing {
            display: "public.a".into(),
            applies,
        };
        assert_eq!(t(missing(true)).as_deref(), Some("public.a"));
        assert_eq!(t(missing(false)), None);
    }

    #[test]
    fn a_protected_object_is_refused_as_such_when_guarded() {
        let p = Target::Protected("table migsafe.audit_log".into());
        assert_eq!(
            p.guarded(RuleId::DropTable).unwrap().rule.id.as_str(),
            "protect-schema"
        );
        assert_eq!(p.display(), "table migsafe.audit_log");
        assert_eq!(identity(p.display()), "migsafe.audit_log");
        assert_eq!(identity("materialized view public.v"), "public.v");
    }
}
