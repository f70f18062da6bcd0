//! ALTER DOMAIN: a domain's rules are checked against every column of its type,
//! in every table that uses it.

use super::target::Target;
use crate::policy::Finding;
use crate::rules::RuleId;

/// What an ALTER DOMAIN does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DomainChange {
    DropDefault,
    SetDefault,
    DropNotNull,
    /// Scans every column of the type.
    SetNotNull,
    DropConstraint,
    /// VALIDATE CONSTRAINT scans every column of the type.
    ValidateConstraint,
    AddConstraint {
        not_valid: bool,
    },
    /// OWNER, RENAME and the like.
    Other,
}

/// The rule an ALTER DOMAIN breaks, if any.
pub fn domain_rule(change: DomainChange) -> Option<RuleId> {
    match change {
        DomainChange::DropDefault => Some(RuleId::DropDefault),
        DomainChange::DropNotNull => Some(RuleId::DropNotNull),
        DomainChange::SetNotNull => Some(RuleId::SetNotNull),
        DomainChange::DropConstraint => Some(RuleId::DropConstraint),
        DomainChange::ValidateConstraint | DomainChange::AddConstraint { not_valid: false } => {
            Some(RuleId::AddCheckConstraint)
        }
        DomainChange::SetDefault
        | DomainChange::AddConstraint { not_valid: true }
        | DomainChange::Other => None,
    }
}

/// The findings of one ALTER DOMAIN: its rule on the domain, or only the
/// protection of pg_migsafe's own.
pub fn alter_domain(change: DomainChange, domain: &Target) -> Vec<Finding> {
    let found = match domain_rule(change) {
        Some(rule) => domain.guarded(rule),
        None => match domain {
            Target::Protected(_) => domain.guarded(RuleId::ProtectSchema),
            _ => None,
        },
    };
    found.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::super::target::ids;
    use super::*;

    #[test]
    fn checks_against_every_column_scan_and_not_valid_does_not() {
        let d = Target::Existing("domain public.email".into());
        assert_eq!(
            ids(&alter_domain(DomainChange::SetNotNull, &d)),
            ["set-not-null"]
        );
        assert_eq!(
            ids(&alter_domain(
                DomainChange::AddConstraint { not_valid: false },
                &d
            )),
            ["add-check-constraint"]
        );
        assert_eq!(
            ids(&alter_domain(DomainChange::ValidateConstraint, &d)),
            ["add-check-constraint"]
        );
        assert!(alter_domain(DomainChange::AddConstraint { not_valid: true }, &d).is_empty());
        assert!(alter_domain(DomainChange::SetDefault, &d).is_empty());
    }

    #[test]
    fn loosening_breaks_clients_that_relied_on_it() {
        let d = Target::Existing("domain public.email".into());
        for (c, id) in [
            (DomainChange::DropDefault, "drop-default"),
            (DomainChange::DropNotNull, "drop-not-null"),
            (DomainChange::DropConstraint, "drop-constraint"),
        ] {
            assert_eq!(ids(&alter_domain(c, &d)), [id]);
        }
    }

    #[test]
    fn new_domains_are_free_and_protected_ones_refused() {
        let n = Target::New("domain public.d".into());
        assert!(alter_domain(DomainChange::SetNotNull, &n).is_empty());
        let p = Target::Protected("domain migsafe.d".into());
        assert_eq!(
            ids(&alter_domain(DomainChange::Other, &p)),
            ["protect-schema"]
        );
    }
}
