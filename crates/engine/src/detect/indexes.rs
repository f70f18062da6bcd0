//! CREATE INDEX and REINDEX: index builds that block writes, and builds that
//! silently build nothing.

use super::target::Target;
use crate::policy::Finding;
use crate::rules::{known, RuleId};
use crate::schema::quote::quote_ident;

/// What a CREATE INDEX says, and what the catalog says about its name.
#[derive(Debug, Clone, PartialEq)]
pub struct CreateIndex {
    /// The indexed table.
    pub table: Target,
    /// The index's name, when the statement gives one.
    pub name: Option<String>,
    /// CREATE INDEX CONCURRENTLY: builds without blocking writes.
    pub concurrently: bool,
    /// ON ONLY a partitioned table: builds nothing (an invalid parent index).
    pub only_parent: bool,
    /// IF NOT EXISTS and an index of that name exists: is it valid? (`None`: it
    /// exists and its validity is unknown.)
    pub exists: Option<Option<bool>>,
}

/// The findings of one CREATE INDEX.
pub fn create_index(c: &CreateIndex) -> Vec<Finding> {
    if let Some(valid) = c.exists {
        // IF NOT EXISTS and the name exists: the statement builds nothing, and an
        // INVALID index (a failed CONCURRENTLY build) stays unusable while the
        // statement "succeeds".
        return match (&c.table, valid, &c.name) {
            (Target::Existing(t), Some(false), Some(i)) => {
                vec![Finding::new(known(RuleId::InvalidIndexExists), t)
                    .fact(format!("Index {} exists and is INVALID", quote_ident(i)))]
            }
            _ => Vec::new(),
        };
    }
    if let Target::Protected(d) = &c.table {
        return vec![Finding::new(known(RuleId::ProtectSchema), d)];
    }
    if c.concurrently || c.only_parent {
        return Vec::new();
    }
    c.table
        .breaks(RuleId::CreateIndex)
        .map(|f| match &c.name {
            Some(i) => f.fact(format!("Index {}", quote_ident(i))),
            None => f,
        })
        .into_iter()
        .collect()
}

/// What a REINDEX rebuilds.
#[derive(Debug, Clone, PartialEq)]
pub enum Reindex {
    /// REINDEX … CONCURRENTLY: builds anew without blocking writes.
    Concurrently,
    /// One index or table. `of_new_table`: an index of a table created in this
    /// transaction.
    Relation { target: Target, of_new_table: bool },
    /// REINDEX SCHEMA / DATABASE / SYSTEM: every index of it (display form).
    Many(String),
}

/// The findings of one REINDEX.
pub fn reindex(r: &Reindex) -> Vec<Finding> {
    match r {
        Reindex::Concurrently => Vec::new(),
        Reindex::Relation {
            of_new_table: true, ..
        } => Vec::new(),
        Reindex::Relation { target, .. } => target.breaks(RuleId::Reindex).into_iter().collect(),
        Reindex::Many(what) => vec![Finding::new(
            known(RuleId::Reindex),
            format!("every index of {what}"),
        )],
    }
}

#[cfg(test)]
mod tests {
    use super::super::target::ids;
    use super::*;

    fn build(table: Target) -> CreateIndex {
        CreateIndex {
            table,
            name: Some("users_email_idx".into()),
            concurrently: false,
            only_parent: false,
            exists: None,
        }
    }

    #[test]
    fn a_plain_build_on_an_existing_table_blocks_writes() {
        let fs = create_index(&build(Target::Existing("table public.users".into())));
        assert_eq!(ids(&fs), ["create-index"]);
        assert_eq!(fs[0].facts, ["Index users_email_idx"]);
        assert!(create_index(&build(Target::New("table public.t".into()))).is_empty());
    }

    #[test]
    fn concurrent_and_parent_only_builds_are_free() {
        let t = Target::Existing("table public.users".into());
        assert!(create_index(&CreateIndex {
            concurrently: true,
            ..build(t.clone())
        })
        .is_empty());
        assert!(create_index(&CreateIndex {
            only_parent: true,
            ..build(t)
        })
        .is_empty());
    }

    #[test]
    fn if_not_exists_over_an_invalid_index_is_caught_and_a_valid_one_is_not() {
        let t = Target::Existing("table public.users".into());
        let invalid = CreateIndex {
            exists: Some(Some(false)),
            concurrently: true,
            ..build(t.clone())
        };
        let fs = create_index(&invalid);
        assert_eq!(ids(&fs), ["invalid-index-exists"]);
        assert!(fs[0].facts[0].contains("INVALID"));
        let valid = CreateIndex {
            exists: Some(Some(true)),
            ..build(t)
        };
        assert!(create_index(&valid).is_empty());
        let on_new = CreateIndex {
            exists: Some(Some(false)),
            ..build(Target::New("table public.t".into()))
        };
        assert!(create_index(&on_new).is_empty());
    }

    #[test]
    fn protected_tables_are_refused() {
        let fs = create_index(&build(Target::Protected("table migsafe.audit_log".into())));
        assert_eq!(ids(&fs), ["protect-schema"]);
    }

    #[test]
    fn reindex_blocks_unless_concurrent_or_new() {
        let t = Target::Existing("index public.users_email_idx".into());
        assert_eq!(
            ids(&reindex(&Reindex::Relation {
                target: t.clone(),
                of_new_table: false
            })),
            ["reindex"]
        );
        assert!(reindex(&Reindex::Relation {
            target: t,
            of_new_table: true
        })
        .is_empty());
        assert!(reindex(&Reindex::Concurrently).is_empty());
        assert_eq!(
            reindex(&Reindex::Many("app".into()))[0].object,
            "every index of app"
        );
    }
}
