//! RENAME and SET SCHEMA: the object stays, its name changes under every client
//! that still uses the old one.

use super::target::Target;
use crate::policy::Finding;
use crate::rules::{known, RuleId};
use crate::schema::quote::quote_ident;

/// What an ALTER … RENAME renames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Renamed {
    /// A table, view, sequence or foreign table, or an index (ALTER INDEX … RENAME
    /// that names a table renames the table: the statement layer says which).
    Relation {
        index: bool,
        /// A view under the old name, created by the same input, keeps clients
        /// working (the rename-with-a-compatibility-view recipe).
        compat_view: bool,
    },
    /// A column or a composite type's attribute.
    Column,
    Schema,
    /// A database, role or tablespace.
    Global,
    /// Names only errors and catalogs show (constraints, triggers, policies,
    /// rules, domain constraints): renaming one breaks no client.
    Internal,
    /// Anything else (types, functions, …).
    Other,
}

/// The findings of one RENAME. For [`Renamed::Internal`] the target is the object
/// the name belongs to (its table or domain), checked for protection only.
pub fn rename(what: Renamed, target: &Target, new_name: &str) -> Vec<Finding> {
    if let Target::Protected(d) = target {
        return vec![Finding::new(known(RuleId::ProtectSchema), d)];
    }
    let rule = match what {
        Renamed::Relation { index, compat_view } if index || compat_view => return Vec::new(),
        Renamed::Internal => return Vec::new(),
        Renamed::Relation { .. } => RuleId::RenameTable,
        Renamed::Column => RuleId::RenameColumn,
        Renamed::Schema => RuleId::RenameSchema,
        Renamed::Global | Renamed::Other => RuleId::RenameObject,
    };
    target
        .breaks(rule)
        .map(|f| f.fact(format!("New name: {}", quote_ident(new_name))))
        .into_iter()
        .collect()
}

/// The findings of one ALTER … SET SCHEMA. `into_migsafe`: the new schema is
/// pg_migsafe's own; `pg_migsafe`: the object is extension pg_migsafe.
pub fn set_schema(
    target: &Target,
    new_schema: &str,
    into_migsafe: bool,
    pg_migsafe: bool,
) -> Vec<Finding> {
    if pg_migsafe {
        return vec![Finding::new(
            known(RuleId::ProtectExtension),
            "extension pg_migsafe",
        )];
    }
    if into_migsafe {
        return vec![Finding::new(
            known(RuleId::ProtectSchema),
            "schema migsafe (moving an object into it)",
        )];
    }
    target
        .guarded(RuleId::SetSchema)
        .map(|f| match f.rule.id {
            RuleId::SetSchema => f.fact(format!("New schema: {}", quote_ident(new_schema))),
            _ => f,
        })
        .into_iter()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::target::ids;
    use super::*;

    fn existing(d: &str) -> Target {
        Target::Existing(d.into())
    }

    #[test]
    fn renaming_a_table_or_column_breaks_clients_and_says_the_new_name() {
        let t = rename(
            Renamed::Relation {
                index: false,
                compat_view: false,
            },
            &existing("table public.users"),
            "Accounts",
        );
        assert_eq!(ids(&t), ["rename-table"]);
        assert_eq!(t[0].facts, [r#"New name: "Accounts""#]);
        let c = rename(
            Renamed::Column,
            &existing("column public.users.email"),
            "mail",
        );
        assert_eq!(ids(&c), ["rename-column"]);
        assert_eq!(c[0].facts, ["New name: mail"]);
    }

    #[test]
    fn names_clients_never_use_are_free() {
        for what in [
            Renamed::Relation {
                index: true,
                compat_view: false,
            },
            Renamed::Relation {
                index: false,
                compat_view: true,
            },
            Renamed::Internal,
        ] {
            assert!(rename(what, &existing("table public.users"), "x").is_empty());
        }
    }

    #[test]
    fn new_objects_are_free_and_protected_ones_refused_whatever_is_renamed() {
        assert!(rename(
            Renamed::Column,
            &Target::New("column public.t.c".into()),
            "d"
        )
        .is_empty());
        let own = Target::Protected("table migsafe.audit_log".into());
        assert_eq!(
            ids(&rename(Renamed::Internal, &own, "x")),
            ["protect-schema"]
        );
        assert_eq!(ids(&rename(Renamed::Column, &own, "x")), ["protect-schema"]);
    }

    #[test]
    fn schemas_globals_and_others_have_their_own_rules() {
        assert_eq!(
            ids(&rename(Renamed::Schema, &existing("schema app"), "app2")),
            ["rename-schema"]
        );
        assert_eq!(
            ids(&rename(Renamed::Global, &existing("role alice"), "bob")),
            ["rename-object"]
        );
        let missing = Target::Missing {
            display: "type public.mood".into(),
            applies: true,
        };
        assert_eq!(
            ids(&rename(Renamed::Other, &missing, "feeling")),
            ["rename-object"]
        );
    }

    #[test]
    fn set_schema_moves_the_object_from_under_its_clients() {
        let fs = set_schema(&existing("table public.users"), "archive", false, false);
        assert_eq!(ids(&fs), ["set-schema"]);
        assert_eq!(fs[0].facts, ["New schema: archive"]);
        assert!(set_schema(&Target::New("table public.t".into()), "a", false, false).is_empty());
        assert_eq!(
            ids(&set_schema(
                &existing("table public.users"),
                "migsafe",
                true,
                false
            )),
            ["protect-schema"]
        );
        assert_eq!(
            ids(&set_schema(
                &existing("extension pg_migsafe"),
                "x",
                false,
                true
            )),
            ["protect-extension"]
        );
        let own = set_schema(
            &Target::Protected("table migsafe.t".into()),
            "public",
            false,
            false,
        );
        assert_eq!(ids(&own), ["protect-schema"]);
        assert!(own[0].facts.is_empty());
    }
}
