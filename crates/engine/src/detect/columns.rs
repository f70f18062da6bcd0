//! ALTER TABLE … ADD COLUMN.

use crate::policy::Finding;
use crate::rules::{known, RuleId};

/// What an ADD COLUMN says, and what the catalog says about its type.
#[derive(Debug, Default, Clone)]
pub struct AddColumn {
    /// e.g. `column public.users.nick`.
    pub column: String,
    /// GENERATED ALWAYS AS (…) STORED, or an identity.
    pub generated: bool,
    /// serial, bigserial, smallserial.
    pub serial: bool,
    /// The default's expression, when there is one.
    pub default: Option<Default>,
    /// NOT NULL (or PRIMARY KEY).
    pub not_null: bool,
    /// The type is a domain with constraints (checked against every row).
    pub domain_with_constraints: bool,
}

/// A column default.
#[derive(Debug, Clone, PartialEq)]
pub struct Default {
    /// The first volatile function it calls (its value differs per row: a rewrite).
    pub volatile_function: Option<String>,
}

/// The findings of one ADD COLUMN. `has_rows` is asked only for a NOT NULL column
/// without a default (it fails on a table with rows).
pub fn add_column(f: &AddColumn, has_rows: impl FnOnce() -> bool) -> Vec<Finding> {
    let mut out = Vec::new();
    if f.generated || f.serial {
        let why = if f.serial {
            "serial column"
        } else {
            "generated or identity column"
        };
        out.push(
            Finding::new(known(RuleId::AddColumnGenerated), &f.column).fact(format!("A {why}")),
        );
    } else if let Some(d) = &f.default {
        if let Some(func) = &d.volatile_function {
            out.push(
                Finding::new(known(RuleId::AddColumnVolatileDefault), &f.column)
                    .fact(format!("Default calls volatile function {func}()")),
            );
        }
    } else if f.domain_with_constraints {
        out.push(
            Finding::new(known(RuleId::AddColumnVolatileDefault), &f.column)
                .fact("The column's domain has constraints, checked against every row"),
        );
    }
    if f.not_null && f.default.is_none() && !f.generated && !f.serial && has_rows() {
        out.push(Finding::new(known(RuleId::AddColumnNotNull), &f.column));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col() -> AddColumn {
        AddColumn {
            column: "column public.users.nick".into(),
            ..AddColumn::default()
        }
    }

    fn rules(fs: &[Finding]) -> Vec<&'static str> {
        fs.iter().map(|f| f.rule.id.as_str()).collect()
    }

    #[test]
    fn a_plain_nullable_column_is_free_and_never_asks_for_rows() {
        let fs = add_column(&col(), || panic!("rows asked for nothing"));
        assert!(fs.is_empty());
    }

    #[test]
    fn a_constant_default_is_free_and_a_volatile_one_rewrites() {
        let constant = AddColumn {
            default: Some(Default {
                volatile_function: None,
            }),
            ..col()
        };
        assert!(add_column(&constant, || true).is_empty());
        let volatile = AddColumn {
            default: Some(Default {
                volatile_function: Some("clock_timestamp".into()),
            }),
            ..col()
        };
        let fs = add_column(&volatile, || true);
        assert_eq!(rules(&fs), ["add-column-volatile-default"]);
        assert!(fs[0].facts[0].contains("clock_timestamp()"));
    }

    #[test]
    fn generated_and_serial_columns_rewrite() {
        for c in [
            AddColumn {
                generated: true,
                ..col()
            },
            AddColumn {
                serial: true,
                ..col()
            },
        ] {
            // NOT NULL is implied and filled by the rewrite: no second finding.
            let c = AddColumn {
                not_null: true,
                ..c
            };
            assert_eq!(rules(&add_column(&c, || true)), ["add-column-generated"]);
        }
    }

    #[test]
    fn not_null_without_default_fails_only_on_a_table_with_rows() {
        let c = AddColumn {
            not_null: true,
            ..col()
        };
        assert_eq!(rules(&add_column(&c, || true)), ["add-column-not-null"]);
        assert!(add_column(&c, || false).is_empty());
        let with_default = AddColumn {
            default: Some(Default {
                volatile_function: None,
            }),
            ..c
        };
        assert!(add_column(&with_default, || panic!("not needed")).is_empty());
    }

    #[test]
    fn a_constrained_domain_is_checked_against_every_row() {
        let c = AddColumn {
            domain_with_constraints: true,
            ..col()
        };
        assert_eq!(
            rules(&add_column(&c, || true)),
            ["add-column-volatile-default"]
        );
        // With a default, the default decides (as before: constant defaults are free).
        let d = AddColumn {
            default: Some(Default {
                volatile_function: None,
            }),
            ..c
        };
        assert!(add_column(&d, || true).is_empty());
    }
}
