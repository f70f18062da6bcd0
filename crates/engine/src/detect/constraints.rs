//! ALTER TABLE … ADD CONSTRAINT (and the constraints of an ADD COLUMN).

use crate::policy::Finding;
use crate::rules::{known, RuleId};

/// The kind of a constraint being added.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    ForeignKey,
    Check,
    PrimaryKey,
    Unique,
    Exclusion,
    Other,
}

/// What an added constraint says.
#[derive(Debug, Clone)]
pub struct AddConstraint {
    /// e.g. `table public.orders`.
    pub table: String,
    pub kind: Kind,
    pub name: Option<String>,
    /// NOT VALID: existing rows are not checked now.
    pub not_valid: bool,
    /// PRIMARY KEY / UNIQUE … USING INDEX: the index exists already.
    pub using_index: bool,
    /// The referenced table of a foreign key.
    pub references: Option<String>,
}

/// The finding of one added constraint, if it scans or builds.
pub fn add_constraint(c: &AddConstraint) -> Option<Finding> {
    let rule = match c.kind {
        Kind::ForeignKey if !c.not_valid => RuleId::AddForeignKey,
        Kind::Check if !c.not_valid => RuleId::AddCheckConstraint,
        Kind::PrimaryKey | Kind::Unique | Kind::Exclusion if !c.using_index => {
            RuleId::AddUniqueConstraint
        }
        _ => return None,
    };
    let mut f = Finding::new(known(rule), &c.table);
    if let Some(n) = &c.name {
        f.facts.push(format!("Constraint {n}"));
    }
    if let (Kind::ForeignKey, Some(r)) = (c.kind, &c.references) {
        f.facts.push(format!("References {r}"));
    }
    Some(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(kind: Kind) -> AddConstraint {
        AddConstraint {
            table: "table public.orders".into(),
            kind,
            name: Some("\"c\"".into()),
            not_valid: false,
            using_index: false,
            references: Some("users".into()),
        }
    }

    fn rule(c: &AddConstraint) -> Option<&'static str> {
        add_constraint(c).map(|f| f.rule.id.as_str())
    }

    #[test]
    fn validated_checks_and_foreign_keys_scan_not_valid_ones_do_not() {
        assert_eq!(rule(&c(Kind::Check)), Some("add-check-constraint"));
        assert_eq!(rule(&c(Kind::ForeignKey)), Some("add-foreign-key"));
        for k in [Kind::Check, Kind::ForeignKey] {
            assert_eq!(
                rule(&AddConstraint {
                    not_valid: true,
                    ..c(k)
                }),
                None
            );
        }
    }

    #[test]
    fn unique_keys_build_an_index_unless_it_exists() {
        for k in [Kind::PrimaryKey, Kind::Unique, Kind::Exclusion] {
            assert_eq!(rule(&c(k)), Some("add-unique-constraint"));
            assert_eq!(
                rule(&AddConstraint {
                    using_index: true,
                    ..c(k)
                }),
                None
            );
        }
        assert_eq!(rule(&c(Kind::Other)), None);
    }

    #[test]
    fn facts_name_the_constraint_and_the_referenced_table() {
        let f = add_constraint(&c(Kind::ForeignKey)).unwrap();
        assert_eq!(f.facts, ["Constraint \"c\"", "References users"]);
        let g = add_constraint(&c(Kind::Check)).unwrap();
        assert_eq!(g.facts, ["Constraint \"c\""]);
    }
}
