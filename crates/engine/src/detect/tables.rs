//! ALTER TABLE's other subcommands: what each one changes for clients, and which
//! ones scan or lock for long. (ADD COLUMN, constraints, type changes and identity
//! sequences have their own families.)

use super::target::identity;
use crate::policy::{Finding, PartitionFact};
use crate::rules::{known, RuleId};
use crate::schema::quote::quote_ident;

/// One ALTER TABLE subcommand, with the facts its decision needs. Columns are
/// given as display forms (`column public.users.email`), and only when the
/// column existed before: a column added in this transaction is no one's yet.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    DropColumn {
        column: String,
        /// Under CASCADE: the existing objects that go with it.
        dependents: Vec<String>,
    },
    DropNotNull {
        column: String,
    },
    SetNotNull {
        column: String,
        /// Validated CHECK constraints prove the column has no NULL: PostgreSQL
        /// skips the scan.
        proven: bool,
    },
    DropDefault {
        column: String,
    },
    /// PostgreSQL 18's ALTER CONSTRAINT … INHERIT on a table with child tables: the
    /// NOT NULL constraint is added to each child, which is scanned.
    InheritNotNull {
        constraint: String,
    },
    DropIdentity {
        column: String,
    },
    /// ADD GENERATED … AS IDENTITY without START WITH.
    AddIdentityFromOne {
        column: String,
        /// The table may hold rows (not known to be empty).
        populated: bool,
    },
    /// ALTER COLUMN … RESTART.
    RestartIdentity {
        column: String,
    },
    EnableRls {
        /// The table has a policy, or the same input creates one.
        has_policy: bool,
    },
    /// VALIDATE CONSTRAINT of a constraint the same `check()` input added NOT
    /// VALID: the rule its validation is.
    ValidateAddedInInput {
        constraint: String,
        rule: RuleId,
    },
    DropConstraint {
        constraint: String,
        /// Added in this transaction.
        new: bool,
        /// It is the table's replica identity in these publications.
        published_by: Option<String>,
    },
    SetUnlogged,
    SetLogged {
        /// A sequence: one row, nothing to rewrite.
        sequence: bool,
    },
    SetTablespace {
        tablespace: String,
    },
    SetAccessMethod,
    DetachPartition {
        partition: String,
        concurrently: bool,
        /// The partition's place in the table (standing approvals).
        fact: Option<PartitionFact>,
    },
    AttachPartition {
        partition: String,
        /// ALTER INDEX … ATTACH PARTITION: a catalog change.
        index: bool,
        /// The partition was created in this transaction.
        new: bool,
        /// The partition may hold rows (then it is scanned).
        rows: bool,
        /// The parent's default partition holds rows (then it is scanned too).
        default_rows: bool,
        /// The partitioned table is under a standing approval: (the attached table's
        /// identity, `standing approval 3 (events-retention)`). Attaching an existing
        /// table then needs an approval.
        standing: Option<(String, String)>,
    },
    NoInherit {
        parent: String,
    },
    /// DISABLE TRIGGER / RULE, ENABLE REPLICA …: it stops firing. `None`: all.
    DisableTrigger {
        name: Option<String>,
    },
    /// REPLICA IDENTITY NOTHING or DEFAULT.
    ReplicaIdentityNarrowed,
    DisableRls,
}

/// The findings of one ALTER TABLE subcommand on `table` (its display form).
pub fn alter_table(table: &str, change: &Change) -> Vec<Finding> {
    let on = |rule: RuleId, object: &str| Finding::new(known(rule), object);
    match change {
        Change::DropColumn { column, dependents } => {
            let mut out = vec![on(RuleId::DropColumn, column)];
            if !dependents.is_empty() {
                let mut f = on(RuleId::DropCascade, column);
                f.dependents = dependents.clone();
                out.push(f);
            }
            out
        }
        Change::DropNotNull { column } => vec![on(RuleId::DropNotNull, column)],
        Change::SetNotNull { proven: true, .. } => Vec::new(),
        Change::SetNotNull { column, .. } => vec![on(RuleId::SetNotNull, column)],
        Change::DropDefault { column } => vec![on(RuleId::DropDefault, column)],
        Change::InheritNotNull { constraint } => vec![on(RuleId::SetNotNull, table).fact(format!(
            "ALTER CONSTRAINT {} INHERIT adds the NOT NULL constraint to every child table, each scanned under ACCESS EXCLUSIVE",
            quote_ident(constraint)
        ))],
        Change::DropIdentity { column } => vec![on(RuleId::DropIdentity, column)],
        Change::AddIdentityFromOne {
            populated: false, ..
        } => Vec::new(),
        Change::AddIdentityFromOne { column, .. } => vec![on(RuleId::AlterSequenceRestart, column)
            .fact("A new identity without START WITH starts at 1 while the column holds values")],
        Change::RestartIdentity { column } => vec![on(RuleId::AlterSequenceRestart, column)
            .fact("The column's identity sequence restarts")],
        Change::EnableRls { has_policy: true } => Vec::new(),
        Change::EnableRls { has_policy: false } => vec![on(RuleId::EnableRlsWithoutPolicy, table)],
        Change::ValidateAddedInInput { constraint, rule } => vec![on(*rule, table).fact(format!(
            "Constraint {} is validated in the input that adds it: the ADD's lock is held through the scan",
            quote_ident(constraint)
        ))],
        Change::DropConstraint { new: true, .. } => Vec::new(),
        Change::DropConstraint {
            constraint,
            published_by,
            ..
        } => {
            let mut out = vec![on(
                RuleId::DropConstraint,
                &format!(
                    "table constraint {} on {}",
                    quote_ident(constraint),
                    identity(table)
                ),
            )];
            if let Some(p) = published_by {
                out.push(on(RuleId::DropReplicaIdentity, table).fact(format!("Published by {p}")));
            }
            out
        }
        Change::SetUnlogged => vec![on(RuleId::SetUnlogged, table)],
        Change::SetLogged { sequence: true } => Vec::new(),
        Change::SetLogged { sequence: false } => vec![on(RuleId::SetLogged, table)],
        Change::SetTablespace { tablespace } => vec![on(RuleId::SetTablespace, table)
            .fact(format!("Tablespace {}", quote_ident(tablespace)))],
        Change::SetAccessMethod => vec![on(RuleId::SetAccessMethod, table)],
        Change::DetachPartition {
            concurrently: true, ..
        } => Vec::new(),
        Change::DetachPartition {
            partition, fact, ..
        } => {
            let mut f = on(RuleId::DetachPartition, table).fact(format!("Partition {partition}"));
            f.partition = fact.clone();
            vec![f]
        }
        Change::AttachPartition {
            partition,
            index,
            new,
            rows,
            default_rows,
            standing,
        } => {
            let mut out = Vec::new();
            // An existing table put under a standing approval's retention.
            if let (false, false, Some((attached, approval))) = (*index, *new, standing) {
                out.push(
                    Finding::new(known(RuleId::AttachUnderStanding), format!("table {attached}"))
                        .fact(format!("The partitioned table {} is under {approval}", identity(table))),
                );
            }
            if *index || *new || !(*rows || *default_rows) {
                return out;
            }
            let mut f = on(RuleId::AttachPartition, table).fact(format!("Partition {partition}"));
            if *default_rows {
                f = f.fact("The default partition has rows: it is scanned too");
            }
            out.push(f);
            out
        }
        Change::NoInherit { parent } => {
            vec![on(RuleId::NoInherit, table).fact(format!("Parent {parent}"))]
        }
        Change::DisableTrigger { name } => {
            let what = name
                .as_deref()
                .map_or_else(|| "all triggers".to_string(), quote_ident);
            vec![on(RuleId::AlterTriggerState, table).fact(format!("Trigger or rule {what}"))]
        }
        Change::ReplicaIdentityNarrowed => vec![on(RuleId::ReplicaIdentity, table)],
        Change::DisableRls => vec![on(RuleId::DisableRls, table)],
    }
}

#[cfg(test)]
mod tests {
    use super::super::target::ids;
    use super::*;

    const T: &str = "table public.users";

    fn col() -> String {
        "column public.users.email".into()
    }

    #[test]
    fn column_changes_that_break_clients() {
        let cases = [
            (
                Change::DropColumn {
                    column: col(),
                    dependents: vec![],
                },
                "drop-column",
            ),
            (Change::DropNotNull { column: col() }, "drop-not-null"),
            (Change::DropDefault { column: col() }, "drop-default"),
            (Change::DropIdentity { column: col() }, "drop-identity"),
            (
                Change::RestartIdentity { column: col() },
                "alter-sequence-restart",
            ),
        ];
        for (c, id) in cases {
            let fs = alter_table(T, &c);
            assert_eq!(ids(&fs), [id], "{c:?}");
            assert_eq!(fs[0].object, col());
        }
    }

    #[test]
    fn drop_column_cascade_names_its_dependents() {
        let fs = alter_table(
            T,
            &Change::DropColumn {
                column: col(),
                dependents: vec!["view public.v".into()],
            },
        );
        assert_eq!(ids(&fs), ["drop-column", "drop-cascade"]);
        assert_eq!(fs[1].dependents, ["view public.v"]);
    }

    #[test]
    fn set_not_null_scans_unless_a_check_proves_it() {
        let c = |proven| Change::SetNotNull {
            column: col(),
            proven,
        };
        assert_eq!(ids(&alter_table(T, &c(false))), ["set-not-null"]);
        let inherit = Change::InheritNotNull {
            constraint: "users_email_nn".into(),
        };
        assert_eq!(ids(&alter_table(T, &inherit)), ["set-not-null"]);
        assert!(alter_table(T, &c(true)).is_empty());
    }

    #[test]
    fn an_identity_from_one_collides_only_with_existing_values() {
        let c = |populated| Change::AddIdentityFromOne {
            column: col(),
            populated,
        };
        assert_eq!(ids(&alter_table(T, &c(true))), ["alter-sequence-restart"]);
        assert!(alter_table(T, &c(false)).is_empty());
    }

    #[test]
    fn rls_without_a_policy_hides_every_row() {
        assert_eq!(
            ids(&alter_table(T, &Change::EnableRls { has_policy: false })),
            ["enable-rls-without-policy"]
        );
        assert!(alter_table(T, &Change::EnableRls { has_policy: true }).is_empty());
        assert_eq!(ids(&alter_table(T, &Change::DisableRls)), ["disable-rls"]);
    }

    #[test]
    fn validating_in_the_adding_input_keeps_the_lock_through_the_scan() {
        let fs = alter_table(
            T,
            &Change::ValidateAddedInInput {
                constraint: "users_org_fk".into(),
                rule: RuleId::AddForeignKey,
            },
        );
        assert_eq!(ids(&fs), ["add-foreign-key"]);
        assert!(fs[0].facts[0].contains("users_org_fk"));
    }

    #[test]
    fn dropping_a_constraint_names_it_and_a_published_identity() {
        let drop = |new, published_by: Option<&str>| Change::DropConstraint {
            constraint: "Users_pkey".into(),
            new,
            published_by: published_by.map(str::to_string),
        };
        let fs = alter_table(T, &drop(false, Some("pub1")));
        assert_eq!(ids(&fs), ["drop-constraint", "drop-replica-identity"]);
        assert_eq!(
            fs[0].object,
            r#"table constraint "Users_pkey" on public.users"#
        );
        assert_eq!(fs[1].facts, ["Published by pub1"]);
        assert!(alter_table(T, &drop(true, Some("pub1"))).is_empty());
    }

    #[test]
    fn storage_changes_rewrite_except_a_sequence_set_logged() {
        assert_eq!(ids(&alter_table(T, &Change::SetUnlogged)), ["set-unlogged"]);
        assert_eq!(
            ids(&alter_table(T, &Change::SetLogged { sequence: false })),
            ["set-logged"]
        );
        assert!(alter_table(T, &Change::SetLogged { sequence: true }).is_empty());
        let ts = alter_table(
            T,
            &Change::SetTablespace {
                tablespace: "fast".into(),
            },
        );
        assert_eq!(ts[0].facts, ["Tablespace fast"]);
        assert_eq!(
            ids(&alter_table(T, &Change::SetAccessMethod)),
            ["set-access-method"]
        );
    }

    #[test]
    fn partitions_detach_safely_only_concurrently() {
        let d = |concurrently| Change::DetachPartition {
            partition: "public.events_2024".into(),
            concurrently,
            fact: None,
        };
        assert_eq!(ids(&alter_table(T, &d(false))), ["detach-partition"]);
        assert!(alter_table(T, &d(true)).is_empty());
    }

    #[test]
    fn attaching_an_existing_table_under_a_standing_approval_is_destructive() {
        let a = |new, standing: Option<&str>| Change::AttachPartition {
            partition: "ledger".into(),
            index: false,
            new,
            rows: false,
            default_rows: false,
            standing: standing.map(|s| ("public.ledger".to_string(), s.to_string())),
        };
        let approval = Some("standing approval 3 (events-retention)");
        let fs = alter_table(T, &a(false, approval));
        assert_eq!(ids(&fs), ["attach-under-standing-approval"]);
        assert_eq!(fs[0].object, "table public.ledger");
        // A table created in this transaction (pg_partman's CREATE + ATTACH), or no
        // standing approval: nothing to approve.
        assert!(alter_table(T, &a(true, approval)).is_empty());
        assert!(alter_table(T, &a(false, None)).is_empty());
    }

    #[test]
    fn attach_is_judged_by_the_rows_it_must_scan() {
        let a = |index, new, rows, default_rows| Change::AttachPartition {
            partition: "public.events_2025".into(),
            index,
            new,
            rows,
            default_rows,
            standing: None,
        };
        assert_eq!(
            ids(&alter_table(T, &a(false, false, true, false))),
            ["attach-partition"]
        );
        assert!(alter_table(T, &a(false, false, false, false)).is_empty());
        assert!(alter_table(T, &a(true, false, true, true)).is_empty());
        assert!(alter_table(T, &a(false, true, true, true)).is_empty());
        let fs = alter_table(T, &a(false, false, false, true));
        assert_eq!(fs[0].facts.len(), 2);
        assert!(fs[0].facts[1].contains("default partition"));
    }

    #[test]
    fn triggers_inheritance_and_identity() {
        let fs = alter_table(T, &Change::DisableTrigger { name: None });
        assert_eq!(ids(&fs), ["alter-trigger-state"]);
        assert_eq!(fs[0].facts, ["Trigger or rule all triggers"]);
        let one = alter_table(
            T,
            &Change::DisableTrigger {
                name: Some("Audit".into()),
            },
        );
        assert_eq!(one[0].facts, [r#"Trigger or rule "Audit""#]);
        assert_eq!(
            ids(&alter_table(
                T,
                &Change::NoInherit {
                    parent: "public.base".into()
                }
            )),
            ["no-inherit"]
        );
        assert_eq!(
            ids(&alter_table(T, &Change::ReplicaIdentityNarrowed)),
            ["replica-identity"]
        );
    }
}
