//! Which statements carry credentials, read from the parse tree: `PASSWORD '…'` of
//! CREATE/ALTER ROLE and USER, the options of user mappings, secret-looking options of
//! foreign servers, wrappers and tables, secret-looking settings, a subscription's
//! CONNECTION. What is redacted, and how, is `engine::redact` (used by `redact.rs`).

use crate::engine::redact::{secret_name, Rule};
use crate::pgutil::cstr;
use pgrx::pg_sys::{self, Node, NodeTag};
use pgrx::PgList;

/// The (name, string value) of each DefElem of an option list.
unsafe fn options(l: *mut pg_sys::List) -> Vec<(String, Option<String>)> {
    PgList::<Node>::from_pg(l)
        .iter_ptr()
        .filter(|n| !n.is_null() && (**n).type_ == NodeTag::T_DefElem)
        .map(|n| {
            let d = n as *mut pg_sys::DefElem;
            (
                cstr((*d).defname).unwrap_or_default(),
                crate::pgutil::string_node((*d).arg),
            )
        })
        .collect()
}

/// The values a `SET name = …` (of ALTER SYSTEM, ALTER ROLE/DATABASE … SET, a
/// function's SET clause) gives a secret-looking setting, as text; empty for other
/// settings. A number is a value too: it is no string constant the redaction could
/// replace, so the statement's text is then withheld whole.
unsafe fn set_values(v: *mut pg_sys::VariableSetStmt) -> Vec<String> {
    if v.is_null() || !secret_name(&cstr((*v).name).unwrap_or_default()) {
        return vec![];
    }
    PgList::<Node>::from_pg((*v).args)
        .iter_ptr()
        .filter(|a| !a.is_null() && (**a).type_ == NodeTag::T_A_Const)
        .filter_map(|a| {
            let c = a as *mut pg_sys::A_Const;
            #[cfg(any(feature = "pg13", feature = "pg14"))]
            let s = match (*c).val.type_ {
                NodeTag::T_String | NodeTag::T_Float => cstr((*c).val.val.str_),
                NodeTag::T_Integer => Some((*c).val.val.ival.to_string()),
                _ => None,
            };
            #[cfg(not(any(feature = "pg13", feature = "pg14")))]
            let s = match (*c).val.node.type_ {
                _ if (*c).isnull => None,
                NodeTag::T_String => cstr((*c).val.sval.sval),
                NodeTag::T_Float => cstr((*c).val.fval.fval),
                NodeTag::T_Integer => Some((*c).val.ival.ival.to_string()),
                _ => None,
            };
            s
        })
        .collect()
}

/// The secret-looking settings of a function's options (`SET name = …` clauses).
unsafe fn function_set_values(l: *mut pg_sys::List) -> Vec<String> {
    PgList::<Node>::from_pg(l)
        .iter_ptr()
        .filter(|n| !n.is_null() && (**n).type_ == NodeTag::T_DefElem)
        .filter_map(|n| {
            let d = n as *mut pg_sys::DefElem;
            let set = cstr((*d).defname).as_deref() == Some("set")
                && !(*d).arg.is_null()
                && (*(*d).arg).type_ == NodeTag::T_VariableSetStmt;
            set.then(|| set_values((*d).arg as *mut pg_sys::VariableSetStmt))
        })
        .flatten()
        .collect()
}

/// Whether a statement carries credentials: the rule that finds them in its text and
/// their values (to check that none is left).
///
/// # Safety
/// `stmt` is a parse tree (raw or utility node), or null.
pub unsafe fn secrets(stmt: *mut Node) -> Option<(Rule, Vec<String>)> {
    if stmt.is_null() {
        return None;
    }
    let named = |opts: Vec<(String, Option<String>)>| -> Option<(Rule, Vec<String>)> {
        let v: Vec<String> = opts
            .into_iter()
            .filter(|(n, _)| secret_name(n))
            .filter_map(|(_, v)| v)
            .collect();
        (!v.is_empty()).then_some((Rule::SecretNames, v))
    };
    match (*stmt).type_ {
        NodeTag::T_CreateRoleStmt | NodeTag::T_AlterRoleStmt => {
            let l = if (*stmt).type_ == NodeTag::T_CreateRoleStmt {
                (*(stmt as *mut pg_sys::CreateRoleStmt)).options
            } else {
                (*(stmt as *mut pg_sys::AlterRoleStmt)).options
            };
            let v: Vec<String> = options(l)
                .into_iter()
                .filter(|(n, _)| n == "password")
                .filter_map(|(_, v)| v)
                .collect();
            (!v.is_empty()).then_some((Rule::Password, v))
        }
        NodeTag::T_CreateUserMappingStmt | NodeTag::T_AlterUserMappingStmt => {
            let l = if (*stmt).type_ == NodeTag::T_CreateUserMappingStmt {
                (*(stmt as *mut pg_sys::CreateUserMappingStmt)).options
            } else {
                (*(stmt as *mut pg_sys::AlterUserMappingStmt)).options
            };
            let opts = options(l);
            if opts.iter().all(|(_, v)| v.is_none()) {
                return None;
            }
            // Every value is replaced; the secret-looking ones must not survive.
            let v: Vec<String> = opts
                .into_iter()
                .filter(|(n, _)| secret_name(n))
                .filter_map(|(_, v)| v)
                .collect();
            Some((Rule::AllOptions, v))
        }
        NodeTag::T_CreateForeignServerStmt => named(options(
            (*(stmt as *mut pg_sys::CreateForeignServerStmt)).options,
        )),
        NodeTag::T_AlterForeignServerStmt => named(options(
            (*(stmt as *mut pg_sys::AlterForeignServerStmt)).options,
        )),
        NodeTag::T_CreateFdwStmt => named(options((*(stmt as *mut pg_sys::CreateFdwStmt)).options)),
        NodeTag::T_AlterFdwStmt => named(options((*(stmt as *mut pg_sys::AlterFdwStmt)).options)),
        NodeTag::T_CreateForeignTableStmt => {
            let f = stmt as *mut pg_sys::CreateForeignTableStmt;
            let mut opts = options((*f).options);
            // column options: CREATE FOREIGN TABLE t (c int OPTIONS (…))
            for e in PgList::<Node>::from_pg((*f).base.tableElts).iter_ptr() {
                if !e.is_null() && (*e).type_ == NodeTag::T_ColumnDef {
                    opts.extend(options((*(e as *mut pg_sys::ColumnDef)).fdwoptions));
                }
            }
            named(opts)
        }
        NodeTag::T_ImportForeignSchemaStmt => named(options(
            (*(stmt as *mut pg_sys::ImportForeignSchemaStmt)).options,
        )),
        NodeTag::T_AlterTableStmt => {
            // ALTER FOREIGN TABLE … OPTIONS (…), ALTER COLUMN … OPTIONS (…)
            let mut opts = Vec::new();
            for cmd in PgList::<pg_sys::AlterTableCmd>::from_pg(
                (*(stmt as *mut pg_sys::AlterTableStmt)).cmds,
            )
            .iter_ptr()
            {
                use pg_sys::AlterTableType as A;
                let st = (*cmd).subtype;
                let def = (*cmd).def;
                if (st == A::AT_GenericOptions || st == A::AT_AlterColumnGenericOptions)
                    && !def.is_null()
                    && (*def).type_ == NodeTag::T_List
                {
                    opts.extend(options(def as *mut pg_sys::List));
                } else if st == A::AT_AddColumn
                    && !def.is_null()
                    && (*def).type_ == NodeTag::T_ColumnDef
                {
                    // ALTER FOREIGN TABLE … ADD COLUMN c int OPTIONS (…)
                    opts.extend(options((*(def as *mut pg_sys::ColumnDef)).fdwoptions));
                }
            }
            named(opts)
        }
        NodeTag::T_CreateSubscriptionStmt => {
            let c = cstr((*(stmt as *mut pg_sys::CreateSubscriptionStmt)).conninfo)?;
            Some((Rule::Connection, vec![c]))
        }
        NodeTag::T_AlterSubscriptionStmt => {
            let c = cstr((*(stmt as *mut pg_sys::AlterSubscriptionStmt)).conninfo)?;
            Some((Rule::Connection, vec![c]))
        }
        NodeTag::T_AlterSystemStmt => {
            let v = set_values((*(stmt as *mut pg_sys::AlterSystemStmt)).setstmt);
            (!v.is_empty()).then_some((Rule::SecretNames, v))
        }
        NodeTag::T_AlterRoleSetStmt => {
            let v = set_values((*(stmt as *mut pg_sys::AlterRoleSetStmt)).setstmt);
            (!v.is_empty()).then_some((Rule::SecretNames, v))
        }
        NodeTag::T_AlterDatabaseSetStmt => {
            let v = set_values((*(stmt as *mut pg_sys::AlterDatabaseSetStmt)).setstmt);
            (!v.is_empty()).then_some((Rule::SecretNames, v))
        }
        NodeTag::T_AlterFunctionStmt => {
            let v = function_set_values((*(stmt as *mut pg_sys::AlterFunctionStmt)).actions);
            (!v.is_empty()).then_some((Rule::SecretNames, v))
        }
        NodeTag::T_CreateFunctionStmt => {
            let v = function_set_values((*(stmt as *mut pg_sys::CreateFunctionStmt)).options);
            (!v.is_empty()).then_some((Rule::SecretNames, v))
        }
        _ => None,
    }
}
