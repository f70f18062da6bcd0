//! DROP and TRUNCATE: the statements that lose data or definitions outright.

use super::target::Target;
use crate::policy::{Finding, PartitionFact};
use crate::rules::{known, RuleId};

/// What a DROP statement removes, as its object type says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropKind {
    Table,
    Schema,
    Sequence,
    View,
    MaterializedView,
    Type,
    Domain,
    /// Function, procedure, aggregate, routine.
    Routine,
    Trigger,
    Rule,
    Policy,
    Publication,
    Extension,
    Index {
        /// DROP INDEX CONCURRENTLY: the safe form, waits for no one under a
        /// table-wide lock.
        concurrently: bool,
    },
    /// Anything else (operators, casts, servers, …).
    Other,
}

/// The rule a DROP of this kind breaks, if any.
pub fn drop_rule(kind: DropKind) -> Option<RuleId> {
    Some(match kind {
        DropKind::Table => RuleId::DropTable,
        DropKind::Schema => RuleId::DropSchema,
        DropKind::Sequence => RuleId::DropSequence,
        DropKind::View => RuleId::DropView,
        DropKind::MaterializedView => RuleId::DropMaterializedView,
        DropKind::Type => RuleId::DropType,
        DropKind::Domain => RuleId::DropDomain,
        DropKind::Routine => RuleId::DropFunction,
        DropKind::Trigger => RuleId::DropTrigger,
        DropKind::Rule => RuleId::DropRule,
        DropKind::Policy => RuleId::DropPolicy,
        DropKind::Publication => RuleId::DropPublication,
        DropKind::Extension => RuleId::DropExtension,
        DropKind::Index { concurrently: true } => return None,
        DropKind::Index {
            concurrently: false,
        } => RuleId::DropIndex,
        DropKind::Other => RuleId::DropObject,
    })
}

/// One object of a DROP statement.
#[derive(Debug, Clone, PartialEq)]
pub struct Dropped {
    pub target: Target,
    /// It is extension pg_migsafe (found here, or named in a `check()` input).
    pub pg_migsafe: bool,
    /// Under CASCADE: the existing objects that go with it (display forms).
    pub dependents: Vec<String>,
    /// A dropped index that is its table's replica identity in a publication:
    /// (the table, the publications).
    pub identity_of: Option<(String, String)>,
    /// The relation it belongs to when its name does not say (a dropped index's
    /// table, e.g. `public.users`): a phase entry for the table covers it.
    pub owner: Option<String>,
    /// A dropped partition's place in its partitioned table (standing approvals).
    pub partition: Option<PartitionFact>,
}

impl Dropped {
    pub fn new(target: Target) -> Self {
        Dropped {
            target,
            pg_migsafe: false,
            dependents: Vec::new(),
            identity_of: None,
            owner: None,
            partition: None,
        }
    }
}

/// The findings of one DROP statement.
pub fn drop(kind: DropKind, cascade: bool, objects: &[Dropped]) -> Vec<Finding> {
    let rule = drop_rule(kind);
    let mut out = Vec::new();
    for o in objects {
        if matches!(o.target, Target::Protected(_)) || o.pg_migsafe {
            let r = if kind == DropKind::Extension {
                RuleId::ProtectExtension
            } else {
                RuleId::ProtectSchema
            };
            let display = match &o.target {
                Target::Missing { .. } => "extension pg_migsafe",
                t => t.display(),
            };
            out.push(Finding::new(known(r), display));
            continue;
        }
        out.extend(rule.and_then(|r| o.target.breaks(r)).map(|mut f| {
            f.owner = o.owner.clone();
            f.partition = o.partition.clone();
            f
        }));
        if let (Target::Existing(_), Some((table, pubs))) = (&o.target, &o.identity_of) {
            out.push(
                Finding::new(known(RuleId::DropReplicaIdentity), table)
                    .fact(format!("Published by {pubs}")),
            );
        }
        match &o.target {
            Target::Missing {
                display,
                applies: true,
            } if cascade => out.push(
                Finding::new(known(RuleId::DropCascade), display)
                    .fact("The object does not exist here, so its dependents are unknown"),
            ),
            t if !o.dependents.is_empty() => {
                let mut f = Finding::new(known(RuleId::DropCascade), t.display());
                f.dependents = o.dependents.clone();
                out.push(f);
            }
            _ => {}
        }
    }
    out
}

/// The findings of one TRUNCATE. `cascade_dependents`: the existing tables that
/// reference the truncated ones, which CASCADE empties too.
pub fn truncate(tables: &[Target], cascade_dependents: &[String]) -> Vec<Finding> {
    let mut out: Vec<Finding> = tables
        .iter()
        .filter_map(|t| t.guarded(RuleId::Truncate))
        .collect();
    if !cascade_dependents.is_empty() {
        if let Some(f) = out.iter_mut().rev().find(|f| f.rule.id == RuleId::Truncate) {
            f.facts
                .push("CASCADE also empties the tables that reference it".into());
            f.dependents = cascade_dependents.to_vec();
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::target::ids;
    use super::*;

    fn existing(d: &str) -> Dropped {
        Dropped::new(Target::Existing(d.into()))
    }

    #[test]
    fn every_kind_has_its_rule_and_only_a_concurrent_index_drop_is_free() {
        assert_eq!(drop_rule(DropKind::Routine), Some(RuleId::DropFunction));
        assert_eq!(drop_rule(DropKind::Other), Some(RuleId::DropObject));
        assert_eq!(
            drop_rule(DropKind::Index {
                concurrently: false
            }),
            Some(RuleId::DropIndex)
        );
        assert_eq!(drop_rule(DropKind::Index { concurrently: true }), None);
    }

    #[test]
    fn an_existing_table_is_destructive_a_new_one_is_not() {
        let fs = drop(DropKind::Table, false, &[existing("table public.a")]);
        assert_eq!(ids(&fs), ["drop-table"]);
        assert_eq!(fs[0].object, "table public.a");
        let new = Dropped::new(Target::New("table public.b".into()));
        assert!(drop(DropKind::Table, false, &[new]).is_empty());
    }

    #[test]
    fn cascade_names_what_goes_with_it_even_for_a_new_object() {
        let mut new = Dropped::new(Target::New("table public.parent".into()));
        new.dependents = vec!["table public.child".into()];
        let fs = drop(DropKind::Table, true, &[new]);
        assert_eq!(ids(&fs), ["drop-cascade"]);
        assert_eq!(fs[0].dependents, ["table public.child"]);
    }

    #[test]
    fn a_missing_object_in_check_is_judged_and_its_dependents_are_unknown() {
        let m = Dropped::new(Target::Missing {
            display: "public.gone".into(),
            applies: true,
        });
        let fs = drop(DropKind::Table, true, std::slice::from_ref(&m));
        assert_eq!(ids(&fs), ["drop-table", "drop-cascade"]);
        assert!(fs[1].facts[0].contains("unknown"));
        assert_eq!(ids(&drop(DropKind::Table, false, &[m])), ["drop-table"]);
        let created = Dropped::new(Target::Missing {
            display: "public.gone".into(),
            applies: false,
        });
        assert!(drop(DropKind::Table, true, &[created]).is_empty());
    }

    #[test]
    fn pg_migsafe_and_its_schema_are_protected() {
        let mut ext = Dropped::new(Target::Missing {
            display: "pg_migsafe".into(),
            applies: true,
        });
        ext.pg_migsafe = true;
        let fs = drop(DropKind::Extension, false, &[ext]);
        assert_eq!(ids(&fs), ["protect-extension"]);
        assert_eq!(fs[0].object, "extension pg_migsafe");
        let own = Dropped::new(Target::Protected("table migsafe.audit_log".into()));
        assert_eq!(
            ids(&drop(DropKind::Table, true, &[own])),
            ["protect-schema"]
        );
    }

    #[test]
    fn dropping_a_published_replica_identity_index_breaks_replication() {
        let mut i = existing("index public.users_email_key");
        i.identity_of = Some(("table public.users".into(), "pub1".into()));
        let mut plain = i.clone();
        plain.identity_of = None;
        plain.owner = Some("public.users".into());
        let fs = drop(
            DropKind::Index {
                concurrently: false,
            },
            false,
            &[plain],
        );
        assert_eq!(ids(&fs), ["drop-index"]);
        assert_eq!(fs[0].owner.as_deref(), Some("public.users"));
        let fs = drop(DropKind::Index { concurrently: true }, false, &[i]);
        assert_eq!(ids(&fs), ["drop-replica-identity"]);
        assert_eq!(fs[0].object, "table public.users");
        assert_eq!(fs[0].facts, ["Published by pub1"]);
    }

    #[test]
    fn truncate_cascade_names_the_referencing_tables_once() {
        let tables = [
            Target::Existing("table public.a".into()),
            Target::New("table public.n".into()),
            Target::Existing("table public.b".into()),
        ];
        let fs = truncate(&tables, &["table public.c".into()]);
        assert_eq!(ids(&fs), ["truncate", "truncate"]);
        assert!(fs[0].dependents.is_empty());
        assert_eq!(fs[1].dependents, ["table public.c"]);
        assert!(truncate(&[Target::New("table public.n".into())], &[]).is_empty());
        assert_eq!(
            ids(&truncate(
                &[Target::Protected("table migsafe.audit_log".into())],
                &[]
            )),
            ["protect-schema"]
        );
    }
}
