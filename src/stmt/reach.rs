//! What a statement reaches in the schema model: the part of the catalog the
//! automatic snapshot must read before the statement runs (`autosnap`), worked out
//! from the parse tree and names resolved as the server resolves them.

use super::nodes::relid_of;
use crate::engine::schema::scope::Scope;
use crate::pgutil::cstr;
use pgrx::pg_sys::{self, NodeTag, ObjectType, Oid};
use pgrx::PgList;

/// What a statement reaches.
pub enum Reach {
    /// Nothing the schema model holds.
    Nothing,
    Part(Scope),
    Everything,
}

fn part() -> Scope {
    Scope::default()
}

unsafe fn nsp_name(oid: Oid) -> Option<String> {
    cstr(pg_sys::get_namespace_name(oid))
}

/// (schema, name) of a RangeVar: its own schema, the schema of the relation it finds
/// through search_path, or the schema CREATE would use.
unsafe fn rv_key(rv: *mut pg_sys::RangeVar, creating: bool) -> Option<(String, String)> {
    if rv.is_null() {
        return None;
    }
    let name = cstr((*rv).relname)?;
    if let Some(s) = cstr((*rv).schemaname) {
        return Some((s, name));
    }
    if (*rv).relpersistence == pg_sys::RELPERSISTENCE_TEMP as c_char {
        return None;
    }
    let oid = relid_of(rv);
    if oid != pg_sys::InvalidOid {
        return Some((nsp_name(pg_sys::get_rel_namespace(oid))?, name));
    }
    if creating {
        let nsp = pg_sys::RangeVarGetCreationNamespace(rv);
        return Some((nsp_name(nsp)?, name));
    }
    None
}

use std::ffi::c_char;

/// (schema, name) of a relation oid.
unsafe fn rel_key(oid: Oid) -> Option<(String, String)> {
    if oid == pg_sys::InvalidOid {
        return None;
    }
    Some((
        nsp_name(pg_sys::get_rel_namespace(oid))?,
        cstr(pg_sys::get_rel_name(oid))?,
    ))
}

unsafe fn strval(n: *mut pg_sys::Node) -> Option<String> {
    crate::pgutil::string_node(n)
}

fn names(l: *mut pg_sys::List) -> Vec<String> {
    unsafe {
        PgList::<pg_sys::Node>::from_pg(l)
            .iter_ptr()
            .filter_map(|n| strval(n))
            .collect()
    }
}

/// The relation a name list (`[schema.]name`) denotes, through search_path.
unsafe fn list_rel(l: *mut pg_sys::List, creating: bool) -> Option<(String, String)> {
    if l.is_null() {
        return None;
    }
    rv_key(pg_sys::makeRangeVarFromNameList(l), creating)
}

/// A qualified type or function name: (schema, name), unqualified names in the
/// schema where CREATE would put them or where search_path finds a type.
unsafe fn qualified_name(l: *mut pg_sys::List, is_type: bool) -> Option<(String, String)> {
    let parts = names(l);
    match parts.as_slice() {
        [s, n] => Some((s.clone(), n.clone())),
        [n] => {
            if is_type {
                let c = std::ffi::CString::new(n.as_str()).ok()?;
                let t = pg_sys::TypenameGetTypid(c.as_ptr());
                if t != pg_sys::InvalidOid {
                    let nsp = type_namespace(t)?;
                    return Some((nsp, n.clone()));
                }
            }
            let mut objname: *mut c_char = std::ptr::null_mut();
            let nsp = pg_sys::QualifiedNameGetCreationNamespace(l, &mut objname);
            Some((nsp_name(nsp)?, n.clone()))
        }
        _ => None,
    }
}

unsafe fn type_namespace(t: Oid) -> Option<String> {
    let tup = pg_sys::SearchSysCache1(
        pg_sys::SysCacheIdentifier::TYPEOID as _,
        pg_sys::Datum::from(t),
    );
    if tup.is_null() {
        return None;
    }
    let form = pg_sys::GETSTRUCT(tup) as *mut pg_sys::FormData_pg_type;
    let nsp = (*form).typnamespace;
    pg_sys::ReleaseSysCache(tup);
    nsp_name(nsp)
}

fn rel_kind(t: ObjectType::Type) -> bool {
    matches!(
        t,
        ObjectType::OBJECT_TABLE
            | ObjectType::OBJECT_VIEW
            | ObjectType::OBJECT_MATVIEW
            | ObjectType::OBJECT_SEQUENCE
            | ObjectType::OBJECT_FOREIGN_TABLE
    )
}

/// Objects that belong to a table, named `[schema.]table.name`.
fn table_part_kind(t: ObjectType::Type) -> bool {
    matches!(
        t,
        ObjectType::OBJECT_COLUMN
            | ObjectType::OBJECT_TABCONSTRAINT
            | ObjectType::OBJECT_TRIGGER
            | ObjectType::OBJECT_POLICY
            | ObjectType::OBJECT_RULE
    )
}

/// What a statement reaches (see the module documentation).
///
/// # Safety
/// `stmt` is a utility statement's parse tree; call inside a transaction.
pub unsafe fn reach(stmt: *mut pg_sys::Node) -> Reach {
    let mut sc = part();
    let add = |sc: &mut Scope, k: Option<(String, String)>| -> bool {
        match k {
            Some(k) => {
                sc.relations.insert(k);
                true
            }
            None => false,
        }
    };
    match (*stmt).type_ {
        NodeTag::T_CreateStmt => {
            let s = stmt as *mut pg_sys::CreateStmt;
            if !add(&mut sc, rv_key((*s).relation, true)) {
                return Reach::Nothing; // temporary table
            }
            for p in PgList::<pg_sys::RangeVar>::from_pg((*s).inhRelations).iter_ptr() {
                add(&mut sc, rv_key(p, false));
            }
        }
        NodeTag::T_CreateTableAsStmt => {
            let s = stmt as *mut pg_sys::CreateTableAsStmt;
            if (*s).into.is_null() || !add(&mut sc, rv_key((*(*s).into).rel, true)) {
                return Reach::Nothing;
            }
        }
        NodeTag::T_ViewStmt => {
            if !add(
                &mut sc,
                rv_key((*(stmt as *mut pg_sys::ViewStmt)).view, true),
            ) {
                return Reach::Nothing;
            }
        }
        NodeTag::T_CreateSeqStmt => {
            if !add(
                &mut sc,
                rv_key((*(stmt as *mut pg_sys::CreateSeqStmt)).sequence, true),
            ) {
                return Reach::Nothing;
            }
        }
        NodeTag::T_AlterSeqStmt => {
            add(
                &mut sc,
                rv_key((*(stmt as *mut pg_sys::AlterSeqStmt)).sequence, false),
            );
        }
        NodeTag::T_IndexStmt => {
            add(
                &mut sc,
                rv_key((*(stmt as *mut pg_sys::IndexStmt)).relation, false),
            );
        }
        NodeTag::T_AlterTableStmt => {
            let s = stmt as *mut pg_sys::AlterTableStmt;
            add(&mut sc, rv_key((*s).relation, false));
            for cmd in PgList::<pg_sys::AlterTableCmd>::from_pg((*s).cmds).iter_ptr() {
                use pg_sys::AlterTableType as A;
                let sub = (*cmd).subtype;
                if sub == A::AT_AttachPartition || sub == A::AT_DetachPartition {
                    let pc = (*cmd).def as *mut pg_sys::PartitionCmd;
                    if !pc.is_null() {
                        add(&mut sc, rv_key((*pc).name, false));
                    }
                } else if (sub == A::AT_DropColumn || sub == A::AT_DropConstraint)
                    && (*cmd).behavior == pg_sys::DropBehavior::DROP_CASCADE
                {
                    // CASCADE reaches dependents we cannot name beforehand.
                    return Reach::Everything;
                }
            }
        }
        NodeTag::T_RenameStmt => {
            let s = stmt as *mut pg_sys::RenameStmt;
            let t = (*s).renameType;
            if rel_kind(t) || table_part_kind(t) || t == ObjectType::OBJECT_INDEX {
                let rel = if t == ObjectType::OBJECT_INDEX {
                    let oid = relid_of((*s).relation);
                    if oid == pg_sys::InvalidOid {
                        return Reach::Nothing;
                    }
                    rel_key(pg_sys::IndexGetRelation(oid, true))
                } else {
                    rv_key((*s).relation, false)
                };
                let Some((schema, name)) = rel else {
                    return Reach::Nothing;
                };
                if rel_kind(t) {
                    if let Some(new) = cstr((*s).newname) {
                        sc.relations.insert((schema.clone(), new));
                    }
                }
                sc.relations.insert((schema, name));
            } else if t == ObjectType::OBJECT_SCHEMA {
                sc.contents.extend(cstr((*s).subname));
                sc.contents.extend(cstr((*s).newname));
            } else if matches!(t, ObjectType::OBJECT_TYPE | ObjectType::OBJECT_DOMAIN) {
                let Some((schema, name)) = qualified_name((*s).object as *mut pg_sys::List, true)
                else {
                    return Reach::Everything;
                };
                if let Some(new) = cstr((*s).newname) {
                    sc.types.insert((schema.clone(), new));
                }
                sc.types.insert((schema, name));
            } else {
                return Reach::Everything;
            }
        }
        NodeTag::T_AlterObjectSchemaStmt => {
            let s = stmt as *mut pg_sys::AlterObjectSchemaStmt;
            let t = (*s).objectType;
            let new = cstr((*s).newschema).unwrap_or_default();
            if rel_kind(t) {
                let Some((schema, name)) = rv_key((*s).relation, false) else {
                    return Reach::Nothing;
                };
                sc.relations.insert((new, name.clone()));
                sc.relations.insert((schema, name));
            } else if matches!(t, ObjectType::OBJECT_TYPE | ObjectType::OBJECT_DOMAIN) {
                let Some((schema, name)) = qualified_name((*s).object as *mut pg_sys::List, true)
                else {
                    return Reach::Everything;
                };
                sc.types.insert((new, name.clone()));
                sc.types.insert((schema, name));
            } else {
                return Reach::Everything;
            }
        }
        NodeTag::T_DropStmt => {
            let s = stmt as *mut pg_sys::DropStmt;
            if (*s).behavior == pg_sys::DropBehavior::DROP_CASCADE {
                return Reach::Everything;
            }
            let t = (*s).removeType;
            for obj in PgList::<pg_sys::Node>::from_pg((*s).objects).iter_ptr() {
                if rel_kind(t) {
                    add(&mut sc, list_rel(obj as *mut pg_sys::List, false));
                } else if t == ObjectType::OBJECT_INDEX {
                    let rv = pg_sys::makeRangeVarFromNameList(obj as *mut pg_sys::List);
                    let oid = relid_of(rv);
                    if oid != pg_sys::InvalidOid {
                        add(&mut sc, rel_key(pg_sys::IndexGetRelation(oid, true)));
                    }
                } else if table_part_kind(t) {
                    let mut l = names(obj as *mut pg_sys::List);
                    l.pop();
                    let rv = match l.as_slice() {
                        [n] => pg_sys::makeRangeVar(
                            std::ptr::null_mut(),
                            pg_sys::pstrdup(
                                std::ffi::CString::new(n.as_str())
                                    .unwrap_or_default()
                                    .as_ptr(),
                            ),
                            -1,
                        ),
                        [s_, n] => pg_sys::makeRangeVar(
                            pg_sys::pstrdup(
                                std::ffi::CString::new(s_.as_str())
                                    .unwrap_or_default()
                                    .as_ptr(),
                            ),
                            pg_sys::pstrdup(
                                std::ffi::CString::new(n.as_str())
                                    .unwrap_or_default()
                                    .as_ptr(),
                            ),
                            -1,
                        ),
                        _ => return Reach::Everything,
                    };
                    add(&mut sc, rv_key(rv, false));
                } else if matches!(t, ObjectType::OBJECT_TYPE | ObjectType::OBJECT_DOMAIN) {
                    let tn = obj as *mut pg_sys::TypeName;
                    match qualified_name((*tn).names, true) {
                        Some(k) => {
                            sc.types.insert(k);
                        }
                        None => return Reach::Everything,
                    }
                } else if t == ObjectType::OBJECT_SCHEMA {
                    sc.contents.extend(strval(obj));
                } else if matches!(
                    t,
                    ObjectType::OBJECT_FUNCTION
                        | ObjectType::OBJECT_PROCEDURE
                        | ObjectType::OBJECT_ROUTINE
                ) {
                    let owa = obj as *mut pg_sys::ObjectWithArgs;
                    match names((*owa).objname).as_slice() {
                        [s_, n] => {
                            sc.functions.insert((s_.clone(), n.clone()));
                        }
                        _ => return Reach::Everything,
                    }
                } else if matches!(
                    t,
                    ObjectType::OBJECT_EXTENSION
                        | ObjectType::OBJECT_ROLE
                        | ObjectType::OBJECT_DATABASE
                        | ObjectType::OBJECT_TABLESPACE
                        | ObjectType::OBJECT_PUBLICATION
                        | ObjectType::OBJECT_SUBSCRIPTION
                        | ObjectType::OBJECT_AGGREGATE
                        | ObjectType::OBJECT_STATISTIC_EXT
                ) || model_less(t)
                {
                    // Without CASCADE (above), nothing the schema model holds goes.
                    return Reach::Nothing;
                } else {
                    return Reach::Everything;
                }
            }
        }
        NodeTag::T_CreateTrigStmt => {
            add(
                &mut sc,
                rv_key((*(stmt as *mut pg_sys::CreateTrigStmt)).relation, false),
            );
        }
        NodeTag::T_CreatePolicyStmt => {
            add(
                &mut sc,
                rv_key((*(stmt as *mut pg_sys::CreatePolicyStmt)).table, false),
            );
        }
        NodeTag::T_AlterPolicyStmt => {
            add(
                &mut sc,
                rv_key((*(stmt as *mut pg_sys::AlterPolicyStmt)).table, false),
            );
        }
        NodeTag::T_RuleStmt => {
            add(
                &mut sc,
                rv_key((*(stmt as *mut pg_sys::RuleStmt)).relation, false),
            );
        }
        NodeTag::T_CommentStmt => {
            let s = stmt as *mut pg_sys::CommentStmt;
            let t = (*s).objtype;
            if rel_kind(t) || t == ObjectType::OBJECT_INDEX {
                let k = list_rel((*s).object as *mut pg_sys::List, false);
                if t == ObjectType::OBJECT_INDEX {
                    return Reach::Everything;
                }
                add(&mut sc, k);
            } else if table_part_kind(t) {
                let l = (*s).object as *mut pg_sys::List;
                let mut parts = names(l);
                parts.pop();
                match parts.as_slice() {
                    [s_, n] => {
                        sc.relations.insert((s_.clone(), n.clone()));
                    }
                    _ => return Reach::Everything,
                }
            } else if t == ObjectType::OBJECT_SCHEMA {
                sc.schemas.extend(strval((*s).object));
            } else {
                return Reach::Everything;
            }
        }
        NodeTag::T_GrantStmt => {
            let s = stmt as *mut pg_sys::GrantStmt;
            if (*s).targtype != pg_sys::GrantTargetType::ACL_TARGET_OBJECT {
                return Reach::Everything;
            }
            match (*s).objtype {
                ObjectType::OBJECT_TABLE | ObjectType::OBJECT_SEQUENCE => {
                    for rv in PgList::<pg_sys::RangeVar>::from_pg((*s).objects).iter_ptr() {
                        add(&mut sc, rv_key(rv, false));
                    }
                }
                ObjectType::OBJECT_SCHEMA => {
                    for n in PgList::<pg_sys::Node>::from_pg((*s).objects).iter_ptr() {
                        sc.schemas.extend(strval(n));
                    }
                }
                ObjectType::OBJECT_DATABASE
                | ObjectType::OBJECT_TABLESPACE
                | ObjectType::OBJECT_LARGEOBJECT
                | ObjectType::OBJECT_FDW
                | ObjectType::OBJECT_FOREIGN_SERVER => return Reach::Nothing,
                _ => return Reach::Everything,
            }
        }
        NodeTag::T_CreateEnumStmt => {
            match qualified_name((*(stmt as *mut pg_sys::CreateEnumStmt)).typeName, false) {
                Some(k) => {
                    sc.types.insert(k);
                }
                None => return Reach::Everything,
            }
        }
        NodeTag::T_AlterEnumStmt => {
            match qualified_name((*(stmt as *mut pg_sys::AlterEnumStmt)).typeName, true) {
                Some(k) => {
                    sc.types.insert(k);
                }
                None => return Reach::Everything,
            }
        }
        NodeTag::T_CreateDomainStmt => {
            match qualified_name((*(stmt as *mut pg_sys::CreateDomainStmt)).domainname, false) {
                Some(k) => {
                    sc.types.insert(k);
                }
                None => return Reach::Everything,
            }
        }
        NodeTag::T_AlterDomainStmt => {
            match qualified_name((*(stmt as *mut pg_sys::AlterDomainStmt)).typeName, true) {
                Some(k) => {
                    sc.types.insert(k);
                }
                None => return Reach::Everything,
            }
        }
        NodeTag::T_CreateFunctionStmt => {
            match qualified_name((*(stmt as *mut pg_sys::CreateFunctionStmt)).funcname, false) {
                Some(k) => {
                    sc.functions.insert(k);
                }
                None => return Reach::Everything,
            }
        }
        NodeTag::T_CreateSchemaStmt => {
            let s = stmt as *mut pg_sys::CreateSchemaStmt;
            let Some(name) = cstr((*s).schemaname) else {
                return Reach::Everything; // AUTHORIZATION only: named after the role
            };
            if (*s).schemaElts.is_null() {
                sc.schemas.insert(name);
            } else {
                sc.contents.insert(name);
            }
        }
        // Nothing the schema model holds.
        NodeTag::T_TruncateStmt
        | NodeTag::T_VacuumStmt
        | NodeTag::T_ClusterStmt
        | NodeTag::T_ReindexStmt
        | NodeTag::T_RefreshMatViewStmt
        | NodeTag::T_AlterOwnerStmt
        | NodeTag::T_AlterDefaultPrivilegesStmt
        | NodeTag::T_CreateRoleStmt
        | NodeTag::T_AlterRoleStmt
        | NodeTag::T_AlterRoleSetStmt
        | NodeTag::T_DropRoleStmt
        | NodeTag::T_GrantRoleStmt
        | NodeTag::T_CreatedbStmt
        | NodeTag::T_AlterDatabaseStmt
        | NodeTag::T_AlterDatabaseSetStmt
        | NodeTag::T_DropdbStmt
        | NodeTag::T_CreateExtensionStmt
        | NodeTag::T_AlterExtensionStmt
        | NodeTag::T_CreateTableSpaceStmt
        | NodeTag::T_DropTableSpaceStmt
        | NodeTag::T_AlterSystemStmt
        | NodeTag::T_VariableSetStmt
        | NodeTag::T_CreatePublicationStmt
        | NodeTag::T_AlterPublicationStmt
        | NodeTag::T_CreateSubscriptionStmt
        | NodeTag::T_AlterSubscriptionStmt
        | NodeTag::T_DropSubscriptionStmt
        | NodeTag::T_CreateStatsStmt
        | NodeTag::T_AlterStatsStmt
        | NodeTag::T_SecLabelStmt
        // Objects the schema model does not hold (operators, casts, collations, text
        // search, access methods, languages, foreign-data wrappers and servers…):
        // creating or altering them changes nothing a snapshot keeps.
        | NodeTag::T_CreateCastStmt
        | NodeTag::T_CreateConversionStmt
        | NodeTag::T_CreateAmStmt
        | NodeTag::T_CreateOpClassStmt
        | NodeTag::T_CreateOpFamilyStmt
        | NodeTag::T_AlterOpFamilyStmt
        | NodeTag::T_AlterOperatorStmt
        | NodeTag::T_CreateTransformStmt
        | NodeTag::T_CreatePLangStmt
        | NodeTag::T_CreateEventTrigStmt
        | NodeTag::T_AlterEventTrigStmt
        | NodeTag::T_AlterTSDictionaryStmt
        | NodeTag::T_AlterTSConfigurationStmt
        | NodeTag::T_CreateFdwStmt
        | NodeTag::T_AlterFdwStmt
        | NodeTag::T_CreateForeignServerStmt
        | NodeTag::T_AlterForeignServerStmt
        | NodeTag::T_CreateUserMappingStmt
        | NodeTag::T_AlterUserMappingStmt
        | NodeTag::T_DropUserMappingStmt
        | NodeTag::T_AlterCollationStmt => return Reach::Nothing,
        // CREATE AGGREGATE, OPERATOR, TEXT SEARCH …, COLLATION: none in the model; a
        // base type (CREATE TYPE … (INPUT = …)) neither (only enums and domains are).
        NodeTag::T_DefineStmt => return Reach::Nothing,
        _ => return Reach::Everything,
    }
    if sc.is_empty() {
        Reach::Nothing
    } else {
        Reach::Part(sc)
    }
}

/// Object kinds the schema model does not hold: dropping one (without CASCADE) takes
/// nothing a snapshot keeps.
fn model_less(t: ObjectType::Type) -> bool {
    matches!(
        t,
        ObjectType::OBJECT_OPERATOR
            | ObjectType::OBJECT_OPCLASS
            | ObjectType::OBJECT_OPFAMILY
            | ObjectType::OBJECT_CAST
            | ObjectType::OBJECT_CONVERSION
            | ObjectType::OBJECT_COLLATION
            | ObjectType::OBJECT_ACCESS_METHOD
            | ObjectType::OBJECT_LANGUAGE
            | ObjectType::OBJECT_TRANSFORM
            | ObjectType::OBJECT_EVENT_TRIGGER
            | ObjectType::OBJECT_TSPARSER
            | ObjectType::OBJECT_TSDICTIONARY
            | ObjectType::OBJECT_TSTEMPLATE
            | ObjectType::OBJECT_TSCONFIGURATION
            | ObjectType::OBJECT_FDW
            | ObjectType::OBJECT_FOREIGN_SERVER
    )
}
