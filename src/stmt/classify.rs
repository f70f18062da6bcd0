#![allow(non_upper_case_globals)]
//! Classification of utility statements on their parse tree (pg_sys nodes).
//!
//! Names are resolved the way the server resolves them (RangeVarGetRelidExtended,
//! get_object_address: search_path, schema-qualified and quoted names), without taking
//! locks. Facts read from the catalog (created in this transaction, temporary, column
//! types, dependents of a CASCADE) are handed to the pure engine, which owns the rules.
//!
//! Two modes: `Hook` classifies a statement about to run; `Check` classifies statements
//! of `migsafe.check()` that will never run, so objects that do not exist are assumed to
//! exist unless an earlier statement of the same input creates them.

use super::nodes::{
    const_int, const_text, defelem_names, name_list, nodes, relid_of, rv_name, strval, tag,
};
use super::txn::{detach_concurrently, outside_transaction};
use crate::engine::detect::drops::{self, DropKind};
use crate::engine::detect::migration::Migration;
use crate::engine::detect::renames::{self, Renamed};
use crate::engine::detect::target::{identity, Target};
use crate::engine::detect::{columns, constraints, indexes, sequences, tables};
use crate::engine::policy::{Finding, TableSize};
use crate::engine::rules::{known, RuleId};
use crate::engine::typechange::{self, ColType, TypeChange};
use crate::pgutil::{cstr, qualified, quote, relkind_word};
use crate::spi::{self, As};
use crate::track;
use pgrx::pg_sys::{self, Node, NodeTag, Oid};
use pgrx::{pg_guard, PgList};
use std::ffi::{c_char, CString};

/// The join (a SQL fragment, `t` a table, `i` an index of it) that keeps the
/// publications that send t's UPDATE or DELETE and whose replica identity i is: its
/// primary key under REPLICA IDENTITY DEFAULT, or the USING INDEX one.
#[cfg(not(any(feature = "pg13", feature = "pg14")))]
macro_rules! identity_publications {
    () => {
        "JOIN pg_catalog.pg_publication p ON (p.pubupdate OR p.pubdelete) \
           AND ((t.relreplident = 'd' AND i.indisprimary) OR (t.relreplident = 'i' AND i.indisreplident)) \
           AND (p.puballtables \
                OR EXISTS (SELECT 1 FROM pg_catalog.pg_publication_rel r \
                            WHERE r.prpubid = p.oid AND r.prrelid = t.oid) \
                OR EXISTS (SELECT 1 FROM pg_catalog.pg_publication_namespace n \
                            WHERE n.pnpubid = p.oid AND n.pnnspid = t.relnamespace))"
    };
}
#[cfg(any(feature = "pg13", feature = "pg14"))]
macro_rules! identity_publications {
    () => {
        "JOIN pg_catalog.pg_publication p ON (p.pubupdate OR p.pubdelete) \
           AND ((t.relreplident = 'd' AND i.indisprimary) OR (t.relreplident = 'i' AND i.indisreplident)) \
           AND (p.puballtables \
                OR EXISTS (SELECT 1 FROM pg_catalog.pg_publication_rel r \
                            WHERE r.prpubid = p.oid AND r.prrelid = t.oid))"
    };
}

unsafe extern "C-unwind" {
    /// pg_constraint.h (not in pgrx's bindings): the constraint `conname` of table
    /// `relid`, InvalidOid if there is none (`missing_ok`).
    fn get_relation_constraint_oid(relid: Oid, conname: *const c_char, missing_ok: bool) -> Oid;
}

pub struct Classifier {
    check_mode: bool,
    /// Names created by earlier statements of a `check()` input (lower-case, as
    /// parsed), and the last part of each (what a bare name is compared with).
    created: std::collections::HashSet<String>,
    created_last: std::collections::HashSet<String>,
    migsafe_nsp: Oid,
    /// check(): the input as a whole (one transaction block when it has more than
    /// one statement), statement after statement.
    pub migration: Migration,
    /// check(): existing relations that earlier statements of the input tied to a
    /// relation the input creates (bare lower-case name of the new one, the existing
    /// one's display, its drop rule, whether only CASCADE takes it along).
    adopted: Vec<(String, String, RuleId, bool)>,
    /// check(): tables (bare lower-case names) the whole input creates a policy on.
    policy_tables: std::collections::HashSet<String>,
    /// check(): views (bare lower-case names) the whole input creates.
    views_created: std::collections::HashSet<String>,
    /// check(): constraints the input adds NOT VALID (bare table name, constraint,
    /// the rule its validation is), so that a VALIDATE in the same input is judged.
    not_valid_added: Vec<(String, String, RuleId)>,
    pub findings: Vec<Finding>,
}

/// Facts about one resolved object.
struct Obj {
    addr: pg_sys::ObjectAddress,
    /// e.g. `table public.users`, `column public.users.email`.
    display: String,
    /// Temporary, or created earlier in this transaction: exempt from every rule.
    exempt: bool,
    /// Lives in schema migsafe (or is pg_migsafe / schema migsafe itself).
    protected: bool,
}

impl Obj {
    /// What the rule families are told about it.
    fn target(&self) -> Target {
        let d = self.display.clone();
        if self.protected {
            Target::Protected(d)
        } else if self.exempt {
            Target::New(d)
        } else {
            Target::Existing(d)
        }
    }
}

// ------------------------------------------------------------------ small helpers

/// Builtin type names the type-change logic knows; other types compare by oid.
fn type_name(oid: Oid) -> String {
    let n = u32::from(oid);
    let s = match n {
        16 => "bool",
        20 => "int8",
        21 => "int2",
        23 => "int4",
        25 => "text",
        114 => "json",
        650 => "cidr",
        869 => "inet",
        700 => "float4",
        701 => "float8",
        1042 => "bpchar",
        1043 => "varchar",
        1082 => "date",
        1083 => "time",
        1114 => "timestamp",
        1184 => "timestamptz",
        1186 => "interval",
        1266 => "timetz",
        1560 => "bit",
        1562 => "varbit",
        1700 => "numeric",
        3802 => "jsonb",
        _ => return format!("oid:{n}"),
    };
    s.to_string()
}

unsafe fn col_type(typid: Oid, typmod: i32) -> (ColType, String) {
    let mut tm = typmod;
    let base = pg_sys::getBaseTypeAndTypmod(typid, &mut tm);
    let shown = cstr(pg_sys::format_type_with_typemod(typid, typmod)).unwrap_or_default();
    (
        ColType {
            name: type_name(base),
            category: pg_sys::TypeCategory(base) as u8 as char,
            typmod: tm,
        },
        shown,
    )
}

/// The schema that an unqualified CREATE would use (hook mode only).
unsafe fn default_creation_nsp() -> Oid {
    let mut objname: *mut c_char = std::ptr::null_mut();
    let l = pg_sys::lappend(
        std::ptr::null_mut(),
        pg_sys::makeString(pg_sys::pstrdup(c"x".as_ptr())).cast(),
    );
    pg_sys::QualifiedNameGetCreationNamespace(l, &mut objname)
}

impl Classifier {
    pub fn new(check_mode: bool) -> Self {
        let migsafe_nsp = unsafe { pg_sys::get_namespace_oid(c"migsafe".as_ptr(), true) };
        Classifier {
            check_mode,
            created: Default::default(),
            created_last: Default::default(),
            migsafe_nsp,
            migration: Migration::default(),
            adopted: Vec::new(),
            policy_tables: Default::default(),
            views_created: Default::default(),
            not_valid_added: Vec::new(),
            findings: Vec::new(),
        }
    }

    /// check(): facts about the whole input, before its statements are classified one
    /// by one (a policy created after ENABLE ROW LEVEL SECURITY still counts).
    pub unsafe fn note_input(&mut self, stmts: &[*mut Node]) {
        for &n in stmts {
            if !n.is_null() && tag(n) == NodeTag::T_ViewStmt {
                let rv = (*(n as *mut pg_sys::ViewStmt)).view;
                if let Some(v) = rv_last(rv) {
                    self.views_created.insert(v.to_lowercase());
                }
            }
            if !n.is_null() && tag(n) == NodeTag::T_CreatePolicyStmt {
                let rv = (*(n as *mut pg_sys::CreatePolicyStmt)).table;
                if !rv.is_null() {
                    if let Some(t) = cstr((*rv).relname) {
                        self.policy_tables.insert(t.to_lowercase());
                    }
                }
            }
        }
    }

    fn add(&mut self, rule: RuleId, object: impl Into<String>) -> &mut Finding {
        self.findings.push(Finding::new(known(rule), object));
        self.findings.last_mut().unwrap()
    }

    fn remember(&mut self, name: String) {
        let name = name.to_lowercase();
        self.created_last
            .insert(name.rsplit('.').next().unwrap_or(&name).to_string());
        self.created.insert(name);
    }

    /// In check mode: was `name` (qualified or bare) created earlier in the input?
    fn created_earlier(&self, name: &str) -> bool {
        let name = name.to_lowercase();
        let bare = name.rsplit('.').next().unwrap_or(&name);
        self.created.contains(&name) || self.created_last.contains(bare)
    }

    /// For an object that does not resolve: does the rule still apply?
    fn unresolved_applies(&self, name: &str) -> bool {
        self.check_mode && !self.created_earlier(name)
    }

    fn is_protected_nsp(&self, nsp: Oid) -> bool {
        nsp != pg_sys::InvalidOid && nsp == self.migsafe_nsp
    }

    /// Does a CREATE with this explicit schema (or none) land in schema migsafe?
    unsafe fn creates_in_migsafe(&self, schemaname: Option<String>) -> bool {
        if self.migsafe_nsp == pg_sys::InvalidOid {
            return false;
        }
        match schemaname {
            Some(s) => s == "migsafe",
            None if self.check_mode => false,
            None => default_creation_nsp() == self.migsafe_nsp,
        }
    }

    unsafe fn protect_create(&mut self, schemaname: Option<String>, what: String) {
        if self.creates_in_migsafe(schemaname) {
            self.add(RuleId::ProtectSchema, what);
        }
    }

    // -------------------------------------------------------------- resolution

    unsafe fn rel(&self, rv: *mut pg_sys::RangeVar) -> Option<Obj> {
        if rv.is_null() {
            return None;
        }
        let oid = relid_of(rv);
        (oid != pg_sys::InvalidOid).then(|| self.rel_obj(oid))
    }

    unsafe fn rel_obj(&self, oid: Oid) -> Obj {
        let nsp = pg_sys::get_rel_namespace(oid);
        let name = cstr(pg_sys::get_rel_name(oid)).unwrap_or_default();
        let kind = relkind_word(pg_sys::get_rel_relkind(oid));
        let temp = pg_sys::get_rel_persistence(oid) as u8 == b't';
        Obj {
            addr: pg_sys::ObjectAddress {
                classId: pg_sys::RelationRelationId,
                objectId: oid,
                objectSubId: 0,
            },
            display: format!("{} {}", kind, qualified(nsp, &name)),
            exempt: temp || track::is_new(pg_sys::RelationRelationId, oid, 0),
            protected: self.is_protected_nsp(nsp),
        }
    }

    /// A name that did not resolve: judged only by check() of an input that did
    /// not create it.
    fn missing(&self, display: String, name: &str) -> Target {
        Target::Missing {
            display,
            applies: self.unresolved_applies(name),
        }
    }

    /// Any object through get_object_address (locked as DROP and RENAME lock it),
    /// as a target.
    unsafe fn object_target(&self, objtype: pg_sys::ObjectType::Type, object: *mut Node) -> Target {
        match self.object(objtype, object) {
            Some(o) => o.target(),
            None => {
                let name = self.unresolved_name(object);
                self.missing(name.clone(), &name)
            }
        }
    }

    /// A column of a resolved relation; None if the column does not exist.
    unsafe fn column(&self, table: &Obj, col: &str) -> Option<(Obj, i16)> {
        let c = CString::new(col).ok()?;
        let attnum = pg_sys::get_attnum(table.addr.objectId, c.as_ptr());
        if attnum == 0 {
            return None;
        }
        let tname = identity(&table.display);
        Some((
            Obj {
                addr: pg_sys::ObjectAddress {
                    classId: pg_sys::RelationRelationId,
                    objectId: table.addr.objectId,
                    objectSubId: attnum as i32,
                },
                display: format!("column {}.{}", tname, quote(col)),
                exempt: table.exempt
                    || track::is_new(
                        pg_sys::RelationRelationId,
                        table.addr.objectId,
                        attnum as i32,
                    ),
                protected: table.protected,
            },
            attnum,
        ))
    }

    /// Any object, through get_object_address (missing_ok), locked as DROP, RENAME,
    /// SET SCHEMA and ALTER OWNER lock it.
    unsafe fn object(&self, objtype: pg_sys::ObjectType::Type, object: *mut Node) -> Option<Obj> {
        self.object_locked(objtype, object, pg_sys::AccessExclusiveLock)
    }

    /// Any object, through get_object_address.
    ///
    /// Relations are resolved without a lock. Other objects are locked by
    /// get_object_address itself; `lockmode` is the lock the statement takes on them
    /// anyway (as PostgreSQL's own DROP / RENAME / COMMENT do, before their ownership
    /// checks), so classifying adds no lock the statement would not take.
    unsafe fn object_locked(
        &self,
        objtype: pg_sys::ObjectType::Type,
        object: *mut Node,
        lockmode: u32,
    ) -> Option<Obj> {
        use pg_sys::ObjectType::*;
        let lockmode = match objtype {
            OBJECT_TABLE | OBJECT_VIEW | OBJECT_MATVIEW | OBJECT_SEQUENCE
            | OBJECT_FOREIGN_TABLE | OBJECT_INDEX | OBJECT_COLUMN => pg_sys::NoLock,
            // A standby takes no heavy lock (AccessShare is the most it may take):
            // the statement fails there with PostgreSQL's read-only error, which the
            // heavy lock would have pre-empted.
            _ if pg_sys::RecoveryInProgress() => pg_sys::AccessShareLock,
            _ => lockmode,
        };
        // RENAME, SET SCHEMA and OWNER TO carry a type's or domain's name as a plain
        // name list, where get_object_address expects a TypeName (PostgreSQL's own
        // code special-cases them the same way).
        let object = if matches!(objtype, OBJECT_TYPE | OBJECT_DOMAIN)
            && !object.is_null()
            && tag(object) == NodeTag::T_List
        {
            pg_sys::makeTypeNameFromNameList(object as *mut pg_sys::List) as *mut Node
        } else {
            object
        };
        if object.is_null() {
            return None;
        }
        let mut relp: pg_sys::Relation = std::ptr::null_mut();
        let addr = pg_sys::get_object_address(objtype, object, &mut relp, lockmode as _, true);
        if !relp.is_null() {
            pg_sys::relation_close(relp, pg_sys::NoLock as _);
        }
        if addr.objectId == pg_sys::InvalidOid {
            return None;
        }
        Some(self.addr_obj(addr))
    }

    unsafe fn addr_obj(&self, addr: pg_sys::ObjectAddress) -> Obj {
        #[cfg(feature = "pg13")]
        let (kind, ident) = (
            cstr(pg_sys::getObjectTypeDescription(&addr)).unwrap_or_default(),
            cstr(pg_sys::getObjectIdentity(&addr)).unwrap_or_default(),
        );
        #[cfg(not(feature = "pg13"))]
        let (kind, ident) = (
            cstr(pg_sys::getObjectTypeDescription(&addr, true)).unwrap_or_default(),
            cstr(pg_sys::getObjectIdentity(&addr, true)).unwrap_or_default(),
        );
        let nsp = if pg_sys::is_objectclass_supported(addr.classId) {
            pg_sys::get_object_namespace(&addr)
        } else {
            pg_sys::InvalidOid
        };
        let temp = nsp != pg_sys::InvalidOid && pg_sys::isAnyTempNamespace(nsp);
        let owner_new = addr.classId == pg_sys::RelationRelationId
            && addr.objectSubId != 0
            && track::is_new(addr.classId, addr.objectId, 0);
        let protected = self.is_protected_nsp(nsp)
            || (addr.classId == pg_sys::NamespaceRelationId
                && self.is_protected_nsp(addr.objectId))
            || (addr.classId == pg_sys::ExtensionRelationId && ident == "pg_migsafe");
        Obj {
            addr,
            display: format!("{kind} {ident}"),
            exempt: temp
                || owner_new
                || track::is_new(addr.classId, addr.objectId, addr.objectSubId),
            protected,
        }
    }

    /// A readable name for an object of a DROP/RENAME list that did not resolve.
    unsafe fn unresolved_name(&self, object: *mut Node) -> String {
        if object.is_null() {
            return String::new();
        }
        pg_sys::check_stack_depth();
        match tag(object) {
            NodeTag::T_List => {
                // A qualified name (list of String), or e.g. a cast's / transform's
                // list of TypeNames, or a rule's / trigger's table + name.
                let items = nodes(object as *mut pg_sys::List);
                if items.iter().all(|n| tag(*n) == NodeTag::T_String) {
                    name_list(object as *mut pg_sys::List)
                } else {
                    let parts: Vec<String> =
                        items.iter().map(|n| self.unresolved_name(*n)).collect();
                    format!("({})", parts.join(", "))
                }
            }
            NodeTag::T_String => strval(object),
            NodeTag::T_TypeName => {
                cstr(pg_sys::TypeNameToString(object as *const pg_sys::TypeName))
                    .unwrap_or_default()
            }
            NodeTag::T_ObjectWithArgs => {
                format!(
                    "{}()",
                    name_list((*(object as *mut pg_sys::ObjectWithArgs)).objname)
                )
            }
            NodeTag::T_RangeVar => rv_name(object as *mut pg_sys::RangeVar),
            _ => String::from("object"),
        }
    }

    /// Everything a CASCADE drop of `addr` would also drop, except objects that are
    /// exempt (temporary or created in this transaction). Views are reported as views,
    /// not as their rewrite rules.
    /// Dropping a relation created in this transaction also drops, with no CASCADE,
    /// what depends on it automatically: partitions, sequences OWNED BY its columns.
    /// Those that existed before the transaction are judged as dropped themselves.
    unsafe fn adopted_relations(&mut self, new: &Obj) {
        const AUTO: &str = "WITH RECURSIVE d(classid, objid) AS ( \
               SELECT classid, objid FROM pg_catalog.pg_depend \
                WHERE refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass AND refobjid = $1 \
                  AND deptype = 'a' \
               UNION \
               SELECT p.classid, p.objid FROM d JOIN pg_catalog.pg_depend p \
                   ON p.refclassid = d.classid AND p.refobjid = d.objid AND p.deptype = 'a' ) \
             SELECT DISTINCT d.objid::int8 FROM d \
              JOIN pg_catalog.pg_class c ON c.oid = d.objid \
             WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass \
               AND c.relkind IN ('r', 'p', 'S', 'm', 'f') \
             ORDER BY 1";
        let oids: Vec<i64> = spi::select(As::Caller, AUTO, &[new.addr.objectId.into()], |t| {
            let mut out = Vec::new();
            for row in t {
                out.push(row.get::<i64>(1)?.unwrap_or(0));
            }
            Ok(out)
        });
        for oid in oids {
            let o = self.rel_obj(Oid::from(oid as u32));
            if o.exempt || crate::work::is_work_object(pg_sys::RelationRelationId, o.addr.objectId)
            {
                continue;
            }
            let rule = if pg_sys::get_rel_relkind(o.addr.objectId) as u8 == b'S' {
                RuleId::DropSequence
            } else {
                RuleId::DropTable
            };
            let why = if new.exempt {
                "new in this transaction"
            } else {
                "a maintenance tool's work object"
            };
            self.add(rule, o.display).facts.push(format!(
                "Dropped along with {}, which is {why}",
                new.display
            ));
        }
    }

    unsafe fn cascade_dependents(&self, addr: &pg_sys::ObjectAddress) -> Vec<String> {
        // Walk "who depends on this" edges (normal, auto, internal, extension). An
        // object reached that is an internal part of another (a view's rewrite rule)
        // brings its owner along, as findDependentObjects() does. Report what is
        // reached through a normal dependency, as owners rather than parts, and never
        // a part of the dropped object itself (a serial column's default reaches the
        // table again through its owned sequence).
        const DEPENDENTS: &str = "WITH RECURSIVE d(classid, objid, objsubid, deptype) AS ( \
               SELECT classid, objid, objsubid, deptype FROM pg_catalog.pg_depend \
                WHERE refclassid = $1 AND refobjid = $2 AND ($3 = 0 OR refobjsubid = $3) \
                  AND deptype IN ('n','a','i','e') \
               UNION \
               SELECT x.classid, x.objid, x.objsubid, x.deptype FROM d, LATERAL ( \
                   SELECT p.classid, p.objid, p.objsubid, p.deptype FROM pg_catalog.pg_depend p \
                    WHERE p.refclassid = d.classid AND p.refobjid = d.objid \
                      AND p.deptype IN ('n','a','i','e') \
                   UNION ALL \
                   SELECT i.refclassid, i.refobjid, 0, d.deptype FROM pg_catalog.pg_depend i \
                    WHERE i.classid = d.classid AND i.objid = d.objid AND i.deptype = 'i' \
                 ) x ) \
             SELECT DISTINCT classid::int8, objid::int8, objsubid FROM d \
              WHERE deptype = 'n' AND NOT (classid = $1 AND objid = $2) \
                AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend i \
                                 WHERE i.classid = d.classid AND i.objid = d.objid AND i.deptype = 'i') \
                AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend p \
                                 WHERE p.classid = d.classid AND p.objid = d.objid \
                                   AND p.refclassid = $1 AND p.refobjid = $2 AND p.deptype IN ('a', 'i')) \
              ORDER BY 1, 2, 3";
        let rows: Vec<(i64, i64, i32)> = spi::select(
            As::Caller,
            DEPENDENTS,
            &[
                addr.classId.into(),
                addr.objectId.into(),
                addr.objectSubId.into(),
            ],
            |table| {
                let mut out = Vec::new();
                for row in table {
                    let c = row.get::<i64>(1)?.unwrap_or(0);
                    let o = row.get::<i64>(2)?.unwrap_or(0);
                    let s = row.get::<i32>(3)?.unwrap_or(0);
                    out.push((c, o, s));
                }
                Ok(out)
            },
        );
        let mut out = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for (c, o, s) in rows {
            pgrx::check_for_interrupts!();
            let a = pg_sys::ObjectAddress {
                classId: Oid::from(c as u32),
                objectId: Oid::from(o as u32),
                objectSubId: s,
            };
            let obj = self.addr_obj(a);
            if !obj.exempt && seen.insert(obj.display.clone()) {
                out.push(obj.display);
            }
        }
        out
    }

    // -------------------------------------------------------------- entry point

    /// Classifies one statement; findings accumulate in `self.findings`.
    pub unsafe fn classify(&mut self, node: *mut Node) {
        if node.is_null() {
            return;
        }
        if self.check_mode {
            self.transaction_hazards(node);
        }
        let before = self.findings.len();
        self.classify_statement(node);
        self.measure(node, before);
    }

    /// Gives the findings from `first` on whose work goes over the statement's table
    /// (rewrite, scan, index build) that table's size, as the catalog estimates it.
    unsafe fn measure(&mut self, node: *mut Node, first: usize) {
        if !self.findings[first..]
            .iter()
            .any(|f| f.rule.work.touches_rows())
        {
            return;
        }
        let Some(relid) = statement_table(node) else {
            return;
        };
        let size = match (
            crate::pgutil::estimated_rows(relid),
            crate::pgutil::estimated_bytes(relid),
        ) {
            (Some(rows), Some(bytes)) => TableSize::Estimated { rows, bytes },
            _ => TableSize::Unknown,
        };
        for f in &mut self.findings[first..] {
            if f.rule.work.touches_rows() && f.size.is_none() {
                f.size = Some(size);
            }
        }
    }

    unsafe fn classify_statement(&mut self, node: *mut Node) {
        match tag(node) {
            NodeTag::T_DropStmt => self.drop_stmt(node as *mut pg_sys::DropStmt),
            NodeTag::T_TruncateStmt => self.truncate(node as *mut pg_sys::TruncateStmt),
            NodeTag::T_RenameStmt => self.rename(node as *mut pg_sys::RenameStmt),
            NodeTag::T_AlterTableStmt => self.alter_table(node as *mut pg_sys::AlterTableStmt),
            NodeTag::T_AlterObjectSchemaStmt => {
                self.set_schema(node as *mut pg_sys::AlterObjectSchemaStmt)
            }
            NodeTag::T_AlterEnumStmt => {
                let s = node as *mut pg_sys::AlterEnumStmt;
                if !(*s).oldVal.is_null() {
                    let tn = pg_sys::makeTypeNameFromNameList((*s).typeName);
                    self.simple(
                        pg_sys::ObjectType::OBJECT_TYPE,
                        tn.cast(),
                        RuleId::RenameEnumValue,
                        |f| {
                            f.facts.push(format!(
                                "Label '{}' -> '{}'",
                                cstr((*s).oldVal).unwrap_or_default(),
                                cstr((*s).newVal).unwrap_or_default()
                            ))
                        },
                    );
                } else {
                    self.protect_names((*s).typeName, pg_sys::ObjectType::OBJECT_TYPE);
                }
            }
            NodeTag::T_AlterSeqStmt => {
                let s = node as *mut pg_sys::AlterSeqStmt;
                let opts = defelem_names((*s).options);
                if let Some(o) = self.rel((*s).sequence) {
                    if o.protected {
                        self.add(RuleId::ProtectSchema, o.display);
                    } else if !o.exempt {
                        let facts = sequences::AlterSequence {
                            sequence: o.display.clone(),
                            restart: opts.iter().any(|d| d == "restart"),
                            limits: sequence_limits((*s).options),
                            reshapes: opts.iter().any(|d| {
                                matches!(
                                    d.as_str(),
                                    "increment"
                                        | "as"
                                        | "cycle"
                                        | "minvalue"
                                        | "maxvalue"
                                        | "start"
                                )
                            }),
                        };
                        let seq = o.addr.objectId;
                        let found = sequences::alter_sequence(&facts, || {
                            restarts_forward(seq, (*s).options)
                        });
                        self.findings.extend(found);
                    }
                } else if opts.iter().any(|d| d == "restart")
                    && self.unresolved_applies(&rv_name((*s).sequence))
                {
                    self.add(
                        RuleId::AlterSequenceRestart,
                        format!("sequence {}", rv_name((*s).sequence)),
                    );
                }
            }
            NodeTag::T_AlterDomainStmt => self.alter_domain(node as *mut pg_sys::AlterDomainStmt),
            NodeTag::T_IndexStmt => self.create_index(node as *mut pg_sys::IndexStmt),
            NodeTag::T_ReindexStmt => self.reindex(node as *mut pg_sys::ReindexStmt),
            NodeTag::T_VacuumStmt => {
                let s = node as *mut pg_sys::VacuumStmt;
                if (*s).is_vacuumcmd && defelem_names((*s).options).iter().any(|d| d == "full") {
                    let rels = nodes((*s).rels);
                    if rels.is_empty() {
                        self.add(RuleId::VacuumFull, "every table of the database");
                    }
                    for r in rels {
                        let rv = (*(r as *mut pg_sys::VacuumRelation)).relation;
                        self.on_relation(rv, RuleId::VacuumFull);
                    }
                }
            }
            NodeTag::T_ClusterStmt => {
                let s = node as *mut pg_sys::ClusterStmt;
                if (*s).relation.is_null() {
                    self.add(RuleId::Cluster, "every clustered table of the database");
                } else {
                    self.on_relation((*s).relation, RuleId::Cluster);
                }
            }
            NodeTag::T_RefreshMatViewStmt => {
                let s = node as *mut pg_sys::RefreshMatViewStmt;
                if !(*s).concurrent {
                    self.on_relation((*s).relation, RuleId::RefreshMatview);
                }
            }
            // A new trigger is how an expand phase keeps old and new columns in step
            // (dual writes); replacing one swaps it atomically under a short lock.
            NodeTag::T_CreateTrigStmt => {
                self.protect_rel((*(node as *mut pg_sys::CreateTrigStmt)).relation);
            }
            NodeTag::T_DropOwnedStmt => {
                let s = node as *mut pg_sys::DropOwnedStmt;
                let roles: Vec<String> = nodes((*s).roles)
                    .into_iter()
                    .map(|r| {
                        cstr((*(r as *mut pg_sys::RoleSpec)).rolename)
                            .unwrap_or_else(|| "CURRENT_USER".into())
                    })
                    .collect();
                self.add(
                    RuleId::DropOwned,
                    format!("everything owned by {}", roles.join(", ")),
                );
            }
            NodeTag::T_DropdbStmt => {
                let s = node as *mut pg_sys::DropdbStmt;
                let name = cstr((*s).dbname).unwrap_or_default();
                let exists = pg_sys::get_database_oid((*s).dbname, true) != pg_sys::InvalidOid;
                if exists || self.unresolved_applies(&name) {
                    self.add(RuleId::DropDatabase, format!("database {}", quote(&name)));
                }
            }
            NodeTag::T_DropRoleStmt => {
                let s = node as *mut pg_sys::DropRoleStmt;
                for r in nodes((*s).roles) {
                    let rs = r as *mut pg_sys::RoleSpec;
                    if let Some(name) = cstr((*rs).rolename) {
                        let c = CString::new(name.clone()).unwrap_or_default();
                        let exists = pg_sys::get_role_oid(c.as_ptr(), true) != pg_sys::InvalidOid;
                        if exists || self.unresolved_applies(&name) {
                            self.add(RuleId::DropRole, format!("role {}", quote(&name)));
                        }
                    }
                }
            }
            NodeTag::T_DropTableSpaceStmt => {
                let s = node as *mut pg_sys::DropTableSpaceStmt;
                let name = cstr((*s).tablespacename).unwrap_or_default();
                if pg_sys::get_tablespace_oid((*s).tablespacename, true) != pg_sys::InvalidOid
                    || self.unresolved_applies(&name)
                {
                    self.add(RuleId::DropObject, format!("tablespace {}", quote(&name)));
                }
            }
            NodeTag::T_DropSubscriptionStmt => {
                let s = node as *mut pg_sys::DropSubscriptionStmt;
                let name = cstr((*s).subname).unwrap_or_default();
                self.add(RuleId::DropObject, format!("subscription {}", quote(&name)));
            }
            NodeTag::T_DropUserMappingStmt => {
                let s = node as *mut pg_sys::DropUserMappingStmt;
                let server = cstr((*s).servername).unwrap_or_default();
                self.add(
                    RuleId::DropObject,
                    format!("user mapping for server {}", quote(&server)),
                );
            }
            NodeTag::T_AlterTableMoveAllStmt => {
                let s = node as *mut pg_sys::AlterTableMoveAllStmt;
                let from = cstr((*s).orig_tablespacename).unwrap_or_default();
                let to = cstr((*s).new_tablespacename).unwrap_or_default();
                self.add(
                    RuleId::SetTablespace,
                    format!("every relation in tablespace {}", quote(&from)),
                )
                .facts
                .push(format!("New tablespace {}", quote(&to)));
            }
            NodeTag::T_AlterExtensionContentsStmt => {
                let s = node as *mut pg_sys::AlterExtensionContentsStmt;
                if cstr((*s).extname).as_deref() == Some("pg_migsafe") {
                    self.add(RuleId::ProtectExtension, "extension pg_migsafe");
                }
            }
            NodeTag::T_VariableSetStmt => self.set_var(node as *mut pg_sys::VariableSetStmt, "SET"),
            NodeTag::T_AlterSystemStmt => self.alter_system(node as *mut pg_sys::AlterSystemStmt),
            NodeTag::T_AlterRoleSetStmt => self.set_var(
                (*(node as *mut pg_sys::AlterRoleSetStmt)).setstmt,
                "ALTER ROLE … SET",
            ),
            NodeTag::T_AlterDatabaseSetStmt => self.set_var(
                (*(node as *mut pg_sys::AlterDatabaseSetStmt)).setstmt,
                "ALTER DATABASE … SET",
            ),
            // ---- creations: remembered for check(), refused in schema migsafe
            NodeTag::T_CreateStmt => {
                let cs = node as *mut pg_sys::CreateStmt;
                self.created_relation((*cs).relation, "table");
                // A new partition of a table with a populated default partition: that
                // partition is scanned (under ACCESS EXCLUSIVE) for rows that now
                // belong to the new one.
                if !(*cs).partbound.is_null() {
                    for p in nodes((*cs).inhRelations) {
                        if let Some(parent) = self.rel(p as *mut pg_sys::RangeVar) {
                            if !parent.exempt
                                && self.populated_default_partition(parent.addr.objectId)
                            {
                                self.add(RuleId::AttachPartition, parent.display).facts.push(
                                    "The default partition has rows: it is scanned for the new partition's".into(),
                                );
                            }
                        }
                    }
                }
            }
            NodeTag::T_CreateForeignTableStmt => {
                let rv = (*(node as *mut pg_sys::CreateStmt)).relation;
                self.created_relation(rv, "foreign table");
            }
            NodeTag::T_ViewStmt => {
                self.created_relation((*(node as *mut pg_sys::ViewStmt)).view, "view")
            }
            NodeTag::T_CreateTableAsStmt => {
                let into = (*(node as *mut pg_sys::CreateTableAsStmt)).into;
                if !into.is_null() {
                    self.created_relation((*into).rel, "table");
                }
            }
            NodeTag::T_CreateSeqStmt => {
                self.created_relation((*(node as *mut pg_sys::CreateSeqStmt)).sequence, "sequence")
            }
            NodeTag::T_CompositeTypeStmt => {
                self.created_relation((*(node as *mut pg_sys::CompositeTypeStmt)).typevar, "type")
            }
            NodeTag::T_CreateEnumStmt => {
                let l = (*(node as *mut pg_sys::CreateEnumStmt)).typeName;
                self.created_names(l, "type");
            }
            NodeTag::T_CreateRangeStmt => {
                let l = (*(node as *mut pg_sys::CreateRangeStmt)).typeName;
                self.created_names(l, "type");
            }
            NodeTag::T_CreateDomainStmt => {
                let l = (*(node as *mut pg_sys::CreateDomainStmt)).domainname;
                self.created_names(l, "domain");
            }
            NodeTag::T_DefineStmt => {
                let l = (*(node as *mut pg_sys::DefineStmt)).defnames;
                self.created_names(l, "object");
            }
            NodeTag::T_CreateFunctionStmt => {
                let l = (*(node as *mut pg_sys::CreateFunctionStmt)).funcname;
                self.created_names(l, "function");
            }
            NodeTag::T_CreateSchemaStmt => {
                let s = node as *mut pg_sys::CreateSchemaStmt;
                if let Some(n) = cstr((*s).schemaname) {
                    self.remember(n);
                }
            }
            NodeTag::T_RuleStmt => {
                let rv = (*(node as *mut pg_sys::RuleStmt)).relation;
                match self.rel(rv) {
                    Some(o) if o.protected => {
                        self.add(RuleId::ProtectSchema, o.display);
                    }
                    _ => {
                        let name =
                            cstr((*(node as *mut pg_sys::RuleStmt)).rulename).unwrap_or_default();
                        if let Some(f) = self.on_relation(rv, RuleId::CreateRule) {
                            f.facts.push(format!("Rule {}", quote(&name)));
                        }
                    }
                }
            }
            NodeTag::T_DoStmt if self.check_mode => {
                self.add(RuleId::OpaqueCode, "a DO block");
            }
            NodeTag::T_LockStmt if self.check_mode => {
                let s = node as *mut pg_sys::LockStmt;
                if (*s).mode >= pg_sys::ShareLock as i32 {
                    let mode = lock_mode_name((*s).mode);
                    for r in nodes((*s).relations) {
                        if let Some(f) =
                            self.on_relation(r as *mut pg_sys::RangeVar, RuleId::LockTable)
                        {
                            f.facts.push(format!("Mode {mode}"));
                        }
                    }
                }
            }
            NodeTag::T_GrantStmt => self.grant(node as *mut pg_sys::GrantStmt),
            NodeTag::T_CreatePolicyStmt => {
                let rv = (*(node as *mut pg_sys::CreatePolicyStmt)).table;
                self.protect_rel(rv);
            }
            NodeTag::T_AlterPolicyStmt => {
                let rv = (*(node as *mut pg_sys::AlterPolicyStmt)).table;
                self.protect_rel(rv);
            }
            NodeTag::T_CommentStmt => {
                let s = node as *mut pg_sys::CommentStmt;
                if let Some(o) =
                    self.object_locked((*s).objtype, (*s).object, pg_sys::ShareUpdateExclusiveLock)
                {
                    if o.protected {
                        self.add(RuleId::ProtectSchema, o.display);
                    }
                }
            }
            NodeTag::T_AlterOwnerStmt => {
                let s = node as *mut pg_sys::AlterOwnerStmt;
                if (*s).relation.is_null() {
                    self.protect_object((*s).objectType, (*s).object);
                } else {
                    self.protect_rel((*s).relation);
                }
            }
            NodeTag::T_AlterFunctionStmt => {
                let s = node as *mut pg_sys::AlterFunctionStmt;
                self.protect_object((*s).objtype, (*s).func.cast());
            }
            NodeTag::T_UpdateStmt => {
                let s = node as *mut pg_sys::UpdateStmt;
                if self.check_mode
                    && ((*s).whereClause.is_null() || constant_true((*s).whereClause))
                {
                    self.on_relation((*s).relation, RuleId::DmlWithoutWhere);
                }
            }
            NodeTag::T_DeleteStmt => {
                let s = node as *mut pg_sys::DeleteStmt;
                if self.check_mode
                    && ((*s).whereClause.is_null() || constant_true((*s).whereClause))
                {
                    self.on_relation((*s).relation, RuleId::DmlWithoutWhere);
                }
            }
            _ => {}
        }
    }

    // -------------------------------------------------------------- statement kinds

    /// A rule that applies to one relation unless it is exempt.
    unsafe fn on_relation(
        &mut self,
        rv: *mut pg_sys::RangeVar,
        rule: RuleId,
    ) -> Option<&mut Finding> {
        let target = match self.rel(rv) {
            Some(o) if o.exempt => Target::New(o.display),
            Some(o) => Target::Existing(o.display),
            None if rv.is_null() => return None,
            None => self.missing(format!("relation {}", rv_name(rv)), &rv_name(rv)),
        };
        self.findings.push(target.breaks(rule)?);
        self.findings.last_mut()
    }

    /// A rule on one object resolved through get_object_address.
    unsafe fn simple(
        &mut self,
        objtype: pg_sys::ObjectType::Type,
        object: *mut Node,
        rule: RuleId,
        extra: impl FnOnce(&mut Finding),
    ) {
        if let Some(mut f) = self.object_target(objtype, object).guarded(rule) {
            if f.rule.id == rule {
                extra(&mut f);
            }
            self.findings.push(f);
        }
    }

    unsafe fn protect_rel(&mut self, rv: *mut pg_sys::RangeVar) {
        if let Some(o) = self.rel(rv) {
            if o.protected {
                self.add(RuleId::ProtectSchema, o.display);
            }
        }
    }

    /// REVOKE of privileges on existing tables, views, sequences or the tables of a
    /// schema: clients that use them fail.
    unsafe fn grant(&mut self, s: *mut pg_sys::GrantStmt) {
        use pg_sys::GrantTargetType::*;
        use pg_sys::ObjectType::*;
        if (*s).is_grant {
            return;
        }
        let privs: Vec<String> = nodes((*s).privileges)
            .into_iter()
            .filter_map(|p| cstr((*(p as *mut pg_sys::AccessPriv)).priv_name))
            .collect();
        let what = if privs.is_empty() {
            "ALL".to_string()
        } else {
            privs.join(", ").to_uppercase()
        };
        match ((*s).targtype, (*s).objtype) {
            (ACL_TARGET_OBJECT, OBJECT_TABLE | OBJECT_SEQUENCE) => {
                for r in nodes((*s).objects) {
                    if let Some(f) =
                        self.on_relation(r as *mut pg_sys::RangeVar, RuleId::RevokePrivileges)
                    {
                        f.facts.push(format!("Privileges {what}"));
                    }
                }
            }
            (ACL_TARGET_ALL_IN_SCHEMA, OBJECT_TABLE | OBJECT_SEQUENCE) => {
                for n in nodes((*s).objects) {
                    let schema = strval(n);
                    self.add(
                        RuleId::RevokePrivileges,
                        format!("every table of schema {}", quote(&schema)),
                    )
                    .facts
                    .push(format!("Privileges {what}"));
                }
            }
            _ => {}
        }
    }

    unsafe fn protect_object(&mut self, objtype: pg_sys::ObjectType::Type, object: *mut Node) {
        if let Some(o) = self.object(objtype, object) {
            if o.protected {
                self.add(RuleId::ProtectSchema, o.display);
            }
        }
    }

    unsafe fn protect_names(
        &mut self,
        names: *mut pg_sys::List,
        objtype: pg_sys::ObjectType::Type,
    ) {
        let tn = pg_sys::makeTypeNameFromNameList(names);
        self.protect_object(objtype, tn.cast());
    }

    unsafe fn created_relation(&mut self, rv: *mut pg_sys::RangeVar, kind: &str) {
        if rv.is_null() {
            return;
        }
        let name = rv_name(rv);
        self.remember(name.clone());
        if (*rv).relpersistence as u8 != b't' {
            self.protect_create(cstr((*rv).schemaname), format!("{kind} {name}"));
        }
    }

    unsafe fn created_names(&mut self, names: *mut pg_sys::List, kind: &str) {
        let l = nodes(names);
        let full = name_list(names);
        self.remember(full.clone());
        let schema = if l.len() >= 2 {
            Some(strval(l[l.len() - 2]))
        } else {
            None
        };
        self.protect_create(schema, format!("{kind} {full}"));
    }

    unsafe fn drop_stmt(&mut self, s: *mut pg_sys::DropStmt) {
        use pg_sys::ObjectType::*;
        let t = (*s).removeType;
        let kind = match t {
            OBJECT_TABLE => DropKind::Table,
            OBJECT_SCHEMA => DropKind::Schema,
            OBJECT_SEQUENCE => DropKind::Sequence,
            OBJECT_VIEW => DropKind::View,
            OBJECT_MATVIEW => DropKind::MaterializedView,
            OBJECT_TYPE => DropKind::Type,
            OBJECT_DOMAIN => DropKind::Domain,
            OBJECT_FUNCTION | OBJECT_PROCEDURE | OBJECT_AGGREGATE | OBJECT_ROUTINE => {
                DropKind::Routine
            }
            OBJECT_TRIGGER => DropKind::Trigger,
            OBJECT_RULE => DropKind::Rule,
            OBJECT_POLICY => DropKind::Policy,
            OBJECT_PUBLICATION => DropKind::Publication,
            OBJECT_EXTENSION => DropKind::Extension,
            OBJECT_INDEX => DropKind::Index {
                concurrently: (*s).concurrent,
            },
            _ => DropKind::Other,
        };
        let cascade = (*s).behavior == pg_sys::DropBehavior::DROP_CASCADE;
        let mut dropped = Vec::new();
        for object in nodes((*s).objects) {
            if other_relation_kind(t, object) {
                // DROP TABLE of a view and the like: PostgreSQL refuses the statement
                // itself, with its own message and the hint naming the right command.
                continue;
            }
            let d = match self.object(t, object) {
                Some(o) => {
                    // A maintenance tool's work object, dropped while its operation
                    // runs (see `work`): no client's.
                    let work = !o.exempt
                        && !o.protected
                        && matches!(t, OBJECT_TABLE | OBJECT_TYPE | OBJECT_TRIGGER)
                        && crate::work::is_work_object(o.addr.classId, o.addr.objectId);
                    let mut d = drops::Dropped::new(if work {
                        Target::New(o.display.clone())
                    } else {
                        o.target()
                    });
                    d.pg_migsafe = t == OBJECT_EXTENSION && o.display.ends_with(" pg_migsafe");
                    if cascade {
                        d.dependents = self.cascade_dependents(&o.addr);
                    }
                    if t == OBJECT_TABLE && o.addr.classId == pg_sys::RelationRelationId {
                        d.partition = super::partition::fact(o.addr.objectId)
                            .or_else(|| super::partition::detached(o.addr.objectId));
                    }
                    if t == OBJECT_TRIGGER {
                        // The table it is on, from the catalog (a name may contain " on ").
                        if let Some(table) = trigger_table(o.addr.objectId) {
                            d.owner = Some(identity(&self.rel_obj(table).display).to_string());
                        }
                    }
                    if t == OBJECT_INDEX && !o.exempt && !o.protected {
                        d.identity_of = self.published_identity(o.addr.objectId);
                        let table = pg_sys::IndexGetRelation(o.addr.objectId, true);
                        if table != pg_sys::InvalidOid {
                            d.owner = Some(identity(&self.rel_obj(table).display).to_string());
                        }
                    }
                    if (o.exempt || work) && o.addr.classId == pg_sys::RelationRelationId {
                        // New, but what it takes along may not be: an existing table
                        // attached as its partition, an existing sequence OWNED BY it.
                        self.adopted_relations(&o);
                    }
                    d
                }
                None => {
                    let name = self.unresolved_name(object);
                    let mut d = drops::Dropped::new(self.missing(name.clone(), &name));
                    d.pg_migsafe = t == OBJECT_EXTENSION && name == "pg_migsafe" && self.check_mode;
                    d
                }
            };
            dropped.push(d);
        }
        self.findings.extend(drops::drop(kind, cascade, &dropped));
    }

    /// The table an index is the replica identity of, and the publications that
    /// publish it: (table, publications).
    unsafe fn published_identity(&self, index: Oid) -> Option<(String, String)> {
        let pubs: Option<String> = spi::one(
            As::Caller,
            concat!(
                "SELECT pg_catalog.string_agg(DISTINCT p.pubname::text, ', ') \
                   FROM pg_catalog.pg_index i \
                   JOIN pg_catalog.pg_class t ON t.oid = i.indrelid ",
                identity_publications!(),
                " WHERE i.indexrelid = $1"
            ),
            &[index.into()],
        );
        let table = self.rel_obj(pg_sys::IndexGetRelation(index, false));
        pubs.map(|p| (table.display, p))
    }

    unsafe fn truncate(&mut self, s: *mut pg_sys::TruncateStmt) {
        let cascade = (*s).behavior == pg_sys::DropBehavior::DROP_CASCADE;
        let mut oids = std::ptr::null_mut();
        let mut tables = Vec::new();
        for r in nodes((*s).relations) {
            let rv = r as *mut pg_sys::RangeVar;
            tables.push(match self.rel(rv) {
                Some(o) => {
                    if !o.exempt && !o.protected {
                        oids = pg_sys::lappend_oid(oids, o.addr.objectId);
                    }
                    o.target()
                }
                None => self.missing(format!("table {}", rv_name(rv)), &rv_name(rv)),
            });
        }
        let mut referencing = Vec::new();
        if cascade && !oids.is_null() {
            let fks = PgList::<Oid>::from_pg(pg_sys::heap_truncate_find_FKs(oids));
            referencing = fks
                .iter_oid()
                .map(|oid| self.rel_obj(oid))
                .filter(|o| !o.exempt)
                .map(|o| o.display)
                .collect();
        }
        self.findings.extend(drops::truncate(&tables, &referencing));
    }

    unsafe fn rename(&mut self, s: *mut pg_sys::RenameStmt) {
        use pg_sys::ObjectType::*;
        let t = (*s).renameType;
        let newname = cstr((*s).newname).unwrap_or_default();
        let (what, target) = match t {
            OBJECT_TABLE | OBJECT_VIEW | OBJECT_MATVIEW | OBJECT_SEQUENCE
            | OBJECT_FOREIGN_TABLE | OBJECT_INDEX => {
                // What is renamed is what the name resolves to: PostgreSQL lets ALTER
                // INDEX … RENAME rename a table.
                let rel = self.rel((*s).relation);
                let index = match &rel {
                    Some(o) => {
                        matches!(pg_sys::get_rel_relkind(o.addr.objectId) as u8, b'i' | b'I')
                    }
                    None => t == OBJECT_INDEX,
                };
                let compat_view = self.check_mode
                    && rv_last((*s).relation)
                        .is_some_and(|old| self.views_created.contains(&old.to_lowercase()));
                let target = match rel {
                    Some(o) => o.target(),
                    None => {
                        let name = rv_name((*s).relation);
                        self.missing(format!("relation {name}"), &name)
                    }
                };
                (Renamed::Relation { index, compat_view }, target)
            }
            OBJECT_COLUMN | OBJECT_ATTRIBUTE | OBJECT_TABCONSTRAINT => {
                let sub = cstr((*s).subname).unwrap_or_default();
                let what = if t == OBJECT_TABCONSTRAINT {
                    Renamed::Internal
                } else {
                    Renamed::Column
                };
                let target = match self.rel((*s).relation) {
                    Some(tb) if tb.protected || tb.exempt => tb.target(),
                    Some(tb) => match self.column(&tb, &sub) {
                        Some((col, _)) => col.target(),
                        None => Target::Missing {
                            display: sub,
                            applies: false,
                        },
                    },
                    None => {
                        let rname = rv_name((*s).relation);
                        Target::Missing {
                            display: format!("column {rname}.{sub}"),
                            applies: self.unresolved_applies(&format!("{rname}.{sub}"))
                                && !self.created_earlier(&rname),
                        }
                    }
                };
                (what, target)
            }
            OBJECT_SCHEMA => {
                let node = pg_sys::makeString(pg_sys::pstrdup((*s).subname));
                (
                    Renamed::Schema,
                    self.object_target(OBJECT_SCHEMA, node.cast()),
                )
            }
            OBJECT_DATABASE | OBJECT_ROLE | OBJECT_TABLESPACE => {
                let name = cstr((*s).subname).unwrap_or_default();
                let node = pg_sys::makeString(pg_sys::pstrdup((*s).subname));
                let kind = match t {
                    OBJECT_DATABASE => "database",
                    OBJECT_ROLE => "role",
                    _ => "tablespace",
                };
                let display = format!("{kind} {}", quote(&name));
                let target = if self.object(t, node.cast()).is_some() {
                    Target::Existing(display)
                } else {
                    self.missing(display, &name)
                };
                (Renamed::Global, target)
            }
            OBJECT_TRIGGER | OBJECT_POLICY | OBJECT_RULE => {
                // The name belongs to its table: only the table's protection counts.
                let target = match self.rel((*s).relation) {
                    Some(o) => o.target(),
                    None => Target::New(String::new()),
                };
                (Renamed::Internal, target)
            }
            OBJECT_DOMCONSTRAINT => match self.object(OBJECT_DOMAIN, (*s).object) {
                Some(o) => (Renamed::Internal, o.target()),
                None => (Renamed::Internal, Target::New(String::new())),
            },
            _ => (Renamed::Other, self.object_target(t, (*s).object)),
        };
        self.findings
            .extend(renames::rename(what, &target, &newname));
    }

    /// check() only: what makes a migration fail because it runs in one transaction
    /// block (as Drizzle runs all pending files, and most runners each file).
    unsafe fn transaction_hazards(&mut self, node: *mut Node) {
        if let Some(o) = outside_transaction(node).filter(|o| !o.transaction_control) {
            self.findings
                .extend(self.migration.outside_transaction(&o.command));
        }
        let values = self.migration.added_enum_values();
        if !values.is_empty() {
            if let Some(v) = uses_string_constant(node, &values) {
                self.findings.extend(self.migration.enum_value_used(&v));
            }
        }
        if let Some(relid) = dml_target(node).filter(|r| self.migration.holds_exclusive(r.to_u32()))
        {
            let rows = crate::pgutil::estimated_rows(relid);
            let table = self.rel_obj(relid).display;
            self.findings
                .extend(self.migration.backfill(relid.to_u32(), &table, rows));
        }
        if self.migration.multi_statement {
            if let Some(relid) = exclusive_lock_target(node) {
                let o = self.rel_obj(relid);
                if !o.exempt {
                    let wide = self.migration.locks_exclusive(relid.to_u32(), o.display);
                    self.findings.extend(wide);
                }
            }
        }
        self.note_adoptions(node);
        if tag(node) == NodeTag::T_SelectStmt {
            for (seq, to) in setval_calls(node) {
                if !setval_forward(&seq, to) {
                    self.add(RuleId::AlterSequenceRestart, format!("sequence {seq}"))
                        .facts
                        .push(format!(
                            "setval to {to}, at or below the last value handed out"
                        ));
                }
            }
        }
        if tag(node) == NodeTag::T_AlterEnumStmt {
            let s = node as *mut pg_sys::AlterEnumStmt;
            let ty = name_list((*s).typeName);
            // Even a type created in the same transaction cannot use a value added by
            // ADD VALUE before commit (PostgreSQL 15 raises 55P04 for it too).
            if (*s).oldVal.is_null() {
                if let Some(v) = cstr((*s).newVal) {
                    self.migration.enum_value_added(ty, v);
                }
            }
        }
    }

    /// check(): an existing sequence made OWNED BY a column of a table the input
    /// creates, an existing table attached as a partition of such a table or made to
    /// inherit from one — dropping the new table later takes it along.
    unsafe fn note_adoptions(&mut self, node: *mut Node) {
        let bare = |n: &str| n.rsplit('.').next().unwrap_or(n).to_lowercase();
        match tag(node) {
            NodeTag::T_AlterSeqStmt => {
                let s = node as *mut pg_sys::AlterSeqStmt;
                for d in nodes((*s).options) {
                    let d = d as *mut pg_sys::DefElem;
                    if cstr((*d).defname).as_deref() != Some("owned_by") || (*d).arg.is_null() {
                        continue;
                    }
                    let names: Vec<String> = nodes((*d).arg as *mut pg_sys::List)
                        .into_iter()
                        .map(|n| strval(n))
                        .collect();
                    if names.len() < 2 {
                        continue; // OWNED BY NONE
                    }
                    let table = names[..names.len() - 1].join(".");
                    if let Some(seq) = self.rel((*s).sequence).filter(|o| !o.exempt) {
                        if self.created_earlier(&table) {
                            self.adopted.push((
                                bare(&table),
                                seq.display,
                                RuleId::DropSequence,
                                false,
                            ));
                        }
                    }
                }
            }
            NodeTag::T_AlterTableStmt => {
                let s = node as *mut pg_sys::AlterTableStmt;
                let target = rv_name((*s).relation);
                for c in nodes((*s).cmds) {
                    if tag(c) != NodeTag::T_AlterTableCmd {
                        continue;
                    }
                    let c = c as *mut pg_sys::AlterTableCmd;
                    let def = (*c).def;
                    match (*c).subtype {
                        pg_sys::AlterTableType::AT_AttachPartition
                            if self.created_earlier(&target)
                                && !def.is_null()
                                && tag(def) == NodeTag::T_PartitionCmd =>
                        {
                            if let Some(p) = self
                                .rel((*(def as *mut pg_sys::PartitionCmd)).name)
                                .filter(|o| !o.exempt)
                            {
                                self.adopted.push((
                                    bare(&target),
                                    p.display,
                                    RuleId::DropTable,
                                    false,
                                ));
                            }
                        }
                        pg_sys::AlterTableType::AT_AddInherit
                            if !def.is_null() && tag(def) == NodeTag::T_RangeVar =>
                        {
                            let parent = rv_name(def as *mut pg_sys::RangeVar);
                            if self.created_earlier(&parent) {
                                if let Some(child) = self.rel((*s).relation).filter(|o| !o.exempt) {
                                    self.adopted.push((
                                        bare(&parent),
                                        child.display,
                                        RuleId::DropTable,
                                        true,
                                    ));
                                }
                            }
                        }
                        _ => {}
                    }
                }
            }
            NodeTag::T_DropStmt
                if (*(node as *mut pg_sys::DropStmt)).removeType
                    == pg_sys::ObjectType::OBJECT_TABLE =>
            {
                let s = node as *mut pg_sys::DropStmt;
                let cascade = (*s).behavior == pg_sys::DropBehavior::DROP_CASCADE;
                for object in nodes((*s).objects) {
                    // A table's name: a list of String nodes.
                    if tag(object) != NodeTag::T_List
                        || nodes(object as *mut pg_sys::List)
                            .into_iter()
                            .any(|n| tag(n) != NodeTag::T_String)
                    {
                        continue;
                    }
                    let name = name_list(object as *mut pg_sys::List);
                    if !self.created_earlier(&name) {
                        continue;
                    }
                    let key = bare(&name);
                    let taken: Vec<(String, RuleId, bool)> = self
                        .adopted
                        .iter()
                        .filter(|(p, _, _, needs_cascade)| *p == key && (cascade || !needs_cascade))
                        .map(|(_, d, r, c)| (d.clone(), *r, *c))
                        .collect();
                    let mut cascaded = Vec::new();
                    for (display, rule, by_cascade) in taken {
                        if by_cascade {
                            cascaded.push(display);
                        } else {
                            self.add(rule, display).facts.push(format!(
                                "Dropped along with {name}, which this input creates"
                            ));
                        }
                    }
                    if !cascaded.is_empty() {
                        self.add(RuleId::DropCascade, name.clone()).dependents = cascaded;
                    }
                }
            }
            _ => {}
        }
    }

    unsafe fn constraint_is_new(&self, relid: Oid, name: &str) -> bool {
        let Ok(c) = CString::new(name) else {
            return false;
        };
        let oid = get_relation_constraint_oid(relid, c.as_ptr(), true);
        oid != pg_sys::InvalidOid && track::is_new(crate::pgutil::catalog::CONSTRAINT, oid, 0)
    }

    unsafe fn set_schema(&mut self, s: *mut pg_sys::AlterObjectSchemaStmt) {
        use pg_sys::ObjectType::*;
        let newschema = cstr((*s).newschema).unwrap_or_default();
        let t = (*s).objectType;
        let pg_migsafe =
            t == OBJECT_EXTENSION && ((*s).object.is_null() || strval((*s).object) == "pg_migsafe");
        let into_migsafe = newschema == "migsafe" && self.migsafe_nsp != pg_sys::InvalidOid;
        let target = if pg_migsafe || into_migsafe {
            Target::New(String::new())
        } else if !(*s).relation.is_null() {
            match self.rel((*s).relation) {
                Some(o) => o.target(),
                None => {
                    let name = rv_name((*s).relation);
                    self.missing(format!("relation {name}"), &name)
                }
            }
        } else {
            self.object_target(t, (*s).object)
        };
        let mut found = renames::set_schema(&target, &newschema, into_migsafe, pg_migsafe);
        // A partition a standing approval detached in this transaction: its move
        // (pg_partman's retention_schema) is judged by the same approval.
        if t == OBJECT_TABLE && !(*s).relation.is_null() {
            if let Some(o) = self.rel((*s).relation) {
                let fact = super::partition::detached(o.addr.objectId);
                for f in found.iter_mut().filter(|f| f.rule.id == RuleId::SetSchema) {
                    f.partition = fact.clone();
                }
            }
        }
        self.findings.extend(found);
    }

    unsafe fn alter_domain(&mut self, s: *mut pg_sys::AlterDomainStmt) {
        use crate::engine::detect::domains::{self, DomainChange};
        let tn = pg_sys::makeTypeNameFromNameList((*s).typeName);
        let change = match (*s).subtype as u8 {
            b'T' if (*s).def.is_null() => DomainChange::DropDefault,
            b'T' => DomainChange::SetDefault,
            b'N' => DomainChange::DropNotNull,
            b'O' => DomainChange::SetNotNull,
            b'X' => DomainChange::DropConstraint,
            b'V' => DomainChange::ValidateConstraint,
            b'C' => {
                let c = (*s).def as *mut pg_sys::Constraint;
                DomainChange::AddConstraint {
                    not_valid: !c.is_null()
                        && tag((*s).def) == NodeTag::T_Constraint
                        && (*c).skip_validation,
                }
            }
            _ => DomainChange::Other,
        };
        let domain = if domains::domain_rule(change).is_some() {
            self.object_target(pg_sys::ObjectType::OBJECT_DOMAIN, tn.cast())
        } else {
            // Only its protection counts: resolve without judging a missing name.
            match self.object(pg_sys::ObjectType::OBJECT_DOMAIN, tn.cast()) {
                Some(o) => o.target(),
                None => Target::New(String::new()),
            }
        };
        self.findings.extend(domains::alter_domain(change, &domain));
    }

    unsafe fn create_index(&mut self, s: *mut pg_sys::IndexStmt) {
        let idx = cstr((*s).idxname);
        if let Some(i) = &idx {
            match cstr((*(*s).relation).schemaname) {
                Some(sch) => self.remember(format!("{sch}.{i}")),
                None => self.remember(i.clone()),
            }
        }
        let table = self.rel((*s).relation);
        let mut exists = None;
        if let (true, Some(t), Some(i)) = (
            (*s).if_not_exists,
            table.as_ref(),
            idx.as_ref().and_then(|i| CString::new(i.as_str()).ok()),
        ) {
            let existing =
                pg_sys::get_relname_relid(i.as_ptr(), pg_sys::get_rel_namespace(t.addr.objectId));
            if existing != pg_sys::InvalidOid {
                exists = Some(index_valid(existing));
            }
        }
        let only_parent = !(*(*s).relation).inh
            && table
                .as_ref()
                .is_some_and(|t| pg_sys::get_rel_relkind(t.addr.objectId) as u8 == b'p');
        let table = match table {
            // A maintenance tool's copy of a table (see `work`): no client's.
            Some(o)
                if !o.exempt && !o.protected && crate::work::is_work_relation(o.addr.objectId) =>
            {
                Target::New(o.display)
            }
            Some(o) => o.target(),
            None => {
                let name = rv_name((*s).relation);
                self.missing(format!("relation {name}"), &name)
            }
        };
        self.findings
            .extend(indexes::create_index(&indexes::CreateIndex {
                table,
                name: idx,
                concurrently: (*s).concurrent,
                only_parent,
                exists,
            }));
    }

    unsafe fn reindex(&mut self, s: *mut pg_sys::ReindexStmt) {
        #[cfg(feature = "pg13")]
        let concurrent = (*s).concurrent;
        #[cfg(not(feature = "pg13"))]
        let concurrent = super::txn::option_on((*s).params, "concurrently");
        use pg_sys::ReindexObjectType::*;
        let r = match (*s).kind {
            _ if concurrent => indexes::Reindex::Concurrently,
            REINDEX_OBJECT_INDEX | REINDEX_OBJECT_TABLE => match self.rel((*s).relation) {
                Some(o) => {
                    // An index created in this transaction is exempt, and so is an
                    // index of a table created in this transaction.
                    let of_new_table = !o.exempt
                        && pg_sys::get_rel_relkind(o.addr.objectId) as u8 == b'i'
                        && track::is_new(
                            pg_sys::RelationRelationId,
                            pg_sys::IndexGetRelation(o.addr.objectId, true),
                            0,
                        );
                    // Reindexing pg_migsafe's own tables is harmless and judged
                    // like any other.
                    let target = if o.exempt {
                        Target::New(o.display)
                    } else {
                        Target::Existing(o.display)
                    };
                    indexes::Reindex::Relation {
                        target,
                        of_new_table,
                    }
                }
                None => {
                    let name = rv_name((*s).relation);
                    indexes::Reindex::Relation {
                        target: self.missing(format!("relation {name}"), &name),
                        of_new_table: false,
                    }
                }
            },
            _ => indexes::Reindex::Many(cstr((*s).name).unwrap_or_else(|| "current".into())),
        };
        self.findings.extend(indexes::reindex(&r));
    }

    unsafe fn set_var(&mut self, v: *mut pg_sys::VariableSetStmt, how: &str) {
        if v.is_null() {
            return;
        }
        if let Some(name) = cstr((*v).name) {
            if name.to_ascii_lowercase().starts_with("migsafe.") {
                self.add(RuleId::ProtectSettings, format!("setting {name}"))
                    .facts
                    .push(format!("{how} cannot change migsafe.* settings"));
            }
        }
    }

    unsafe fn alter_system(&mut self, s: *mut pg_sys::AlterSystemStmt) {
        let v = (*s).setstmt;
        if v.is_null() {
            return;
        }
        use pg_sys::VariableSetKind::*;
        let name = cstr((*v).name).unwrap_or_default().to_ascii_lowercase();
        if (*v).kind == VAR_RESET_ALL {
            self.add(
                RuleId::ProtectSettings,
                "all settings (ALTER SYSTEM RESET ALL)",
            )
            .facts
            .push("RESET ALL could remove pg_migsafe from shared_preload_libraries".into());
        } else if name.starts_with("migsafe.") {
            self.add(RuleId::ProtectSettings, format!("setting {name}"))
                .facts
                .push("ALTER SYSTEM cannot change migsafe.* settings".into());
        } else if name == "shared_preload_libraries" {
            let keeps = (*v).kind == VAR_SET_VALUE
                && nodes((*v).args).into_iter().any(|a| {
                    tag(a) == NodeTag::T_A_Const && {
                        let c = a as *mut pg_sys::A_Const;
                        #[cfg(any(feature = "pg13", feature = "pg14"))]
                        let text = cstr((*c).val.val.str_);
                        #[cfg(not(any(feature = "pg13", feature = "pg14")))]
                        let text = cstr((*c).val.sval.sval);
                        text.map(|t| {
                            t.split(',')
                                .any(|p| p.trim().trim_matches('"') == "pg_migsafe")
                        })
                        .unwrap_or(false)
                    }
                });
            if !keeps {
                self.add(RuleId::ProtectSettings, "setting shared_preload_libraries")
                    .facts
                    .push("The new value would unload pg_migsafe at the next restart".into());
            }
        }
    }

    // -------------------------------------------------------------- ALTER TABLE

    unsafe fn alter_table(&mut self, s: *mut pg_sys::AlterTableStmt) {
        let rv = (*s).relation;
        let table = self.rel(rv);
        if let Some(t) = &table {
            if t.protected {
                self.add(RuleId::ProtectSchema, t.display.clone());
                return;
            }
            if t.exempt {
                return;
            }
        } else if !self.unresolved_applies(&rv_name(rv)) {
            return;
        }
        let display = match &table {
            Some(t) => t.display.clone(),
            None => format!("table {}", rv_name(rv)),
        };
        let cmds = nodes((*s).cmds);
        for c in cmds {
            if tag(c) != NodeTag::T_AlterTableCmd {
                continue;
            }
            self.alter_table_cmd(s, table.as_ref(), &display, c as *mut pg_sys::AlterTableCmd);
        }
    }

    unsafe fn alter_table_cmd(
        &mut self,
        stmt: *mut pg_sys::AlterTableStmt,
        table: Option<&Obj>,
        display: &str,
        cmd: *mut pg_sys::AlterTableCmd,
    ) {
        use pg_sys::AlterTableType::*;
        use tables::Change;
        let colname = cstr((*cmd).name).unwrap_or_default();
        // A column of this table: None = exempt (new) or missing in hook mode.
        let column = |me: &Self| -> Option<String> {
            match table {
                Some(t) => match me.column(t, &colname) {
                    Some((c, _)) if !c.exempt => Some(c.display),
                    _ => None,
                },
                None => {
                    let tname = identity(display);
                    let full = format!("{tname}.{colname}");
                    (!me.created_earlier(&full)).then(|| format!("column {full}"))
                }
            }
        };
        let relkind = table.map(|t| pg_sys::get_rel_relkind(t.addr.objectId) as u8);
        let own_identity = table.map(|t| identity(&t.display).to_string());
        let st = (*cmd).subtype;
        let change = match st {
            AT_AddColumn | AT_AddColumnToView => {
                self.add_column(stmt, table, display, (*cmd).def);
                None
            }
            AT_AlterColumnType => {
                if let Some(col) = column(self) {
                    self.alter_column_type(table, col, &colname, (*cmd).def);
                }
                None
            }
            AT_AddConstraint => {
                self.add_constraint(stmt, table, display, (*cmd).def);
                None
            }
            AT_DropColumn => column(self).map(|col| {
                let cascade = (*cmd).behavior == pg_sys::DropBehavior::DROP_CASCADE;
                let dependents = match (cascade, table) {
                    (true, Some(t)) => self
                        .column(t, &colname)
                        .map(|(c, _)| self.cascade_dependents(&c.addr))
                        .unwrap_or_default(),
                    _ => Vec::new(),
                };
                Change::DropColumn {
                    column: col,
                    dependents,
                }
            }),
            AT_DropNotNull => column(self).map(|column| Change::DropNotNull { column }),
            AT_SetNotNull => {
                // The scan is of the table, so a column added to an existing table in
                // this transaction still costs it; PostgreSQL skips it when validated
                // CHECK constraints prove the column has no NULL.
                let named = || format!("column {}.{}", identity(display), quote(&colname));
                match table {
                    Some(t) => match self.column(t, &colname) {
                        Some((c, attnum)) => Some(Change::SetNotNull {
                            column: c.display,
                            proven: self.not_null_proven(stmt, t.addr.objectId, attnum),
                        }),
                        // Added earlier in check()'s input: it exists when this runs.
                        None if self.check_mode => Some(Change::SetNotNull {
                            column: named(),
                            proven: false,
                        }),
                        None => None,
                    },
                    None => Some(Change::SetNotNull {
                        column: named(),
                        proven: false,
                    }),
                }
            }
            AT_ColumnDefault if (*cmd).def.is_null() => {
                column(self).map(|column| Change::DropDefault { column })
            }
            AT_DropIdentity => column(self).map(|column| Change::DropIdentity { column }),
            AT_AddIdentity if !identity_has_start((*cmd).def) => {
                column(self).map(|column| Change::AddIdentityFromOne {
                    column,
                    populated: table.is_none_or(|t| !self.known_empty(t.addr.objectId)),
                })
            }
            AT_SetIdentity
                if !(*cmd).def.is_null()
                    && tag((*cmd).def) == NodeTag::T_List
                    && defelem_names((*cmd).def as *mut pg_sys::List)
                        .iter()
                        .any(|d| d == "restart") =>
            {
                column(self).map(|column| Change::RestartIdentity { column })
            }
            AT_EnableRowSecurity => Some(Change::EnableRls {
                has_policy: table.is_some_and(|t| table_has_policy(t.addr.objectId))
                    || rv_last((*stmt).relation).is_some_and(|n| self.policy_tables.contains(&n)),
            }),
            AT_ValidateConstraint if self.check_mode => {
                let t = rv_last((*stmt).relation).unwrap_or_default();
                self.not_valid_added
                    .iter()
                    .find(|(tb, c, _)| *tb == t && *c == colname)
                    .map(|(_, _, rule)| Change::ValidateAddedInInput {
                        constraint: colname.clone(),
                        rule: *rule,
                    })
            }
            AT_DropConstraint => {
                let new = table.is_some_and(|t| self.constraint_is_new(t.addr.objectId, &colname));
                let published_by = match table.filter(|t| !t.exempt) {
                    Some(t) if !new => spi::one(
                        As::Caller,
                        concat!(
                            "SELECT pg_catalog.string_agg(DISTINCT p.pubname::text, ', ') \
                               FROM pg_catalog.pg_constraint c \
                               JOIN pg_catalog.pg_class t ON t.oid = c.conrelid \
                               JOIN pg_catalog.pg_index i ON i.indexrelid = c.conindid ",
                            identity_publications!(),
                            " WHERE c.conrelid = $1 AND c.conname = $2"
                        ),
                        &[t.addr.objectId.into(), colname.as_str().into()],
                    ),
                    _ => None,
                };
                Some(Change::DropConstraint {
                    constraint: colname.clone(),
                    new,
                    published_by,
                })
            }
            AT_SetUnLogged => Some(Change::SetUnlogged),
            AT_SetLogged => Some(Change::SetLogged {
                sequence: relkind == Some(b'S'),
            }),
            AT_SetTableSpace => Some(Change::SetTablespace {
                tablespace: colname.clone(),
            }),
            #[cfg(not(any(feature = "pg13", feature = "pg14")))]
            AT_SetAccessMethod => Some(Change::SetAccessMethod),
            AT_DetachPartition => {
                let pc = (*cmd).def as *mut pg_sys::PartitionCmd;
                Some(Change::DetachPartition {
                    partition: if pc.is_null() {
                        String::new()
                    } else {
                        rv_name((*pc).name)
                    },
                    concurrently: detach_concurrently((*cmd).def),
                    fact: if pc.is_null() || (*pc).name.is_null() {
                        None
                    } else {
                        super::partition::fact(pg_sys::RangeVarGetRelidExtended(
                            (*pc).name,
                            pg_sys::NoLock as _,
                            pg_sys::RVROption::RVR_MISSING_OK,
                            None,
                            std::ptr::null_mut(),
                        ))
                        // Only a partition of the table the statement alters.
                        .filter(|f| Some(&f.parent) == own_identity.as_ref())
                    },
                })
            }
            // FINALIZE completes an interrupted DETACH … CONCURRENTLY: the safe form.
            #[cfg(not(feature = "pg13"))]
            AT_DetachPartitionFinalize => None,
            AT_AttachPartition => {
                let pc = (*cmd).def as *mut pg_sys::PartitionCmd;
                let part = if pc.is_null() {
                    None
                } else {
                    self.rel((*pc).name)
                };
                let index = matches!(relkind, Some(b'i' | b'I'));
                let new = part.as_ref().is_some_and(|p| p.exempt);
                let skip = index || new;
                Some(Change::AttachPartition {
                    partition: if pc.is_null() {
                        String::new()
                    } else {
                        rv_name((*pc).name)
                    },
                    index,
                    new,
                    // The new partition is scanned unless it is empty; the default
                    // partition is scanned whenever it has rows.
                    rows: !skip
                        && part
                            .as_ref()
                            .is_none_or(|p| !self.known_empty(p.addr.objectId)),
                    default_rows: !skip
                        && table.is_some_and(|t| self.populated_default_partition(t.addr.objectId)),
                    // An existing table put under a standing approval's retention.
                    standing: match (&part, &own_identity) {
                        (Some(p), Some(parent)) if !index && !new => {
                            crate::phase::standing_approval_of(parent)
                                .map(|approval| (identity(&p.display).to_string(), approval))
                        }
                        _ => None,
                    },
                })
            }
            AT_DropInherit => {
                let parent = (*cmd).def as *mut pg_sys::RangeVar;
                Some(Change::NoInherit {
                    parent: if parent.is_null() {
                        String::new()
                    } else {
                        rv_name(parent)
                    },
                })
            }
            // Enabling puts back what the table had; disabling (or ENABLE REPLICA, which
            // fires only under session_replication_role = replica) stops it firing.
            AT_DisableTrig | AT_DisableTrigAll | AT_DisableTrigUser | AT_EnableReplicaTrig
            | AT_DisableRule | AT_EnableReplicaRule => Some(Change::DisableTrigger {
                name: (!colname.is_empty()).then(|| colname.clone()),
            }),
            // FULL sends more to logical replication, USING INDEX names another key;
            // NOTHING makes UPDATE and DELETE fail on a published table, DEFAULT may
            // send less than before.
            AT_ReplicaIdentity
                if matches!(replica_identity_kind((*cmd).def), Some(b'n' | b'd')) =>
            {
                Some(Change::ReplicaIdentityNarrowed)
            }
            AT_DisableRowSecurity | AT_NoForceRowSecurity => Some(Change::DisableRls),
            // PostgreSQL 18: ALTER CONSTRAINT … INHERIT adds a NOT NULL constraint to every
            // child table, scanning each; NO INHERIT leaves them as they are.
            #[cfg(feature = "pg18")]
            AT_AlterConstraint => {
                let ac = (*cmd).def as *mut pg_sys::ATAlterConstraint;
                (!ac.is_null()
                    && (*ac).type_ == pg_sys::NodeTag::T_ATAlterConstraint
                    && (*ac).alterInheritability
                    && !(*ac).noinherit
                    && table.is_some_and(|t| has_children(t.addr.objectId)))
                .then(|| Change::InheritNotNull {
                    constraint: cstr((*ac).conname).unwrap_or_default(),
                })
            }
            _ => None,
        };
        if let Some(c) = change {
            self.findings.extend(tables::alter_table(display, &c));
        }
    }

    /// ALTER TABLE … ADD CONSTRAINT: judged by the constraints family; a NOT VALID
    /// one is remembered for a VALIDATE later in the same check() input.
    unsafe fn add_constraint(
        &mut self,
        stmt: *mut pg_sys::AlterTableStmt,
        table: Option<&Obj>,
        display: &str,
        def: *mut Node,
    ) {
        if def.is_null() || tag(def) != NodeTag::T_Constraint {
            return;
        }
        let c = def as *mut pg_sys::Constraint;
        self.constraint(display, c);
        if self.check_mode && (*c).skip_validation {
            let rule = if (*c).contype == pg_sys::ConstrType::CONSTR_FOREIGN {
                RuleId::AddForeignKey
            } else {
                RuleId::AddCheckConstraint
            };
            if let (Some(t), Some(n)) = (rv_last((*stmt).relation), cstr((*c).conname)) {
                self.not_valid_added.push((t, n, rule));
            }
        }
        if let (Some(t), true) = (table, !(*c).indexname.is_null()) {
            self.constraint_using_index(stmt, t, c);
        }
    }

    unsafe fn constraint(&mut self, display: &str, c: *mut pg_sys::Constraint) {
        use pg_sys::ConstrType::*;
        let kind = match (*c).contype {
            CONSTR_FOREIGN => constraints::Kind::ForeignKey,
            CONSTR_CHECK => constraints::Kind::Check,
            CONSTR_PRIMARY => constraints::Kind::PrimaryKey,
            CONSTR_UNIQUE => constraints::Kind::Unique,
            CONSTR_EXCLUSION => constraints::Kind::Exclusion,
            _ => constraints::Kind::Other,
        };
        let facts = constraints::AddConstraint {
            table: display.to_string(),
            kind,
            name: cstr((*c).conname).map(|n| quote(&n)),
            not_valid: (*c).skip_validation,
            using_index: !(*c).indexname.is_null(),
            references: (!(*c).pktable.is_null()).then(|| rv_name((*c).pktable)),
        };
        if let Some(f) = constraints::add_constraint(&facts) {
            self.findings.push(f);
        }
    }

    unsafe fn add_column(
        &mut self,
        stmt: *mut pg_sys::AlterTableStmt,
        table: Option<&Obj>,
        display: &str,
        def: *mut Node,
    ) {
        use pg_sys::ConstrType::*;
        if def.is_null() || tag(def) != NodeTag::T_ColumnDef {
            return;
        }
        let cd = def as *mut pg_sys::ColumnDef;
        let colname = cstr((*cd).colname).unwrap_or_default();
        let tname = identity(display).to_string();
        self.remember(format!("{tname}.{colname}"));
        let coldisplay = format!("column {}.{}", tname, quote(&colname));

        let mut default: *mut Node = (*cd).raw_default;
        let mut not_null = (*cd).is_not_null;
        let mut generated = false;
        let mut inline: Vec<*mut pg_sys::Constraint> = Vec::new();
        for c in nodes((*cd).constraints) {
            let c = c as *mut pg_sys::Constraint;
            match (*c).contype {
                CONSTR_DEFAULT => default = (*c).raw_expr,
                CONSTR_NOTNULL => not_null = true,
                CONSTR_PRIMARY => {
                    not_null = true;
                    inline.push(c)
                }
                CONSTR_IDENTITY => generated = true,
                // PostgreSQL 18's virtual generated columns (its default kind) are
                // computed when read: adding one writes no row.
                CONSTR_GENERATED => generated = !super::nodes::virtual_generated(c),
                CONSTR_CHECK | CONSTR_UNIQUE | CONSTR_FOREIGN | CONSTR_EXCLUSION => inline.push(c),
                _ => {}
            }
        }
        let typ = (*cd).typeName;
        let typname = if typ.is_null() {
            String::new()
        } else {
            name_list((*typ).names)
        };
        let serial = matches!(
            typname.trim_start_matches("pg_catalog."),
            "serial" | "bigserial" | "smallserial" | "serial2" | "serial4" | "serial8"
        );
        let facts = columns::AddColumn {
            column: coldisplay.clone(),
            generated,
            serial,
            default: (!default.is_null()).then(|| columns::Default {
                volatile_function: self.volatile_function(default),
            }),
            not_null,
            domain_with_constraints: !typ.is_null()
                && default.is_null()
                && domain_has_constraints(typ),
        };
        let found = columns::add_column(&facts, || match table {
            Some(t) => self.has_rows(stmt, t.addr.objectId),
            None => true,
        });
        self.findings.extend(found);
        for c in inline {
            self.constraint(display, c);
        }
    }

    /// Does the table have rows? Its data files are looked at without waiting for a
    /// lock or keeping one (`light_look`); when that is not possible right now, the
    /// answer is "maybe", i.e. yes. A view has none; a partitioned table is taken to
    /// have rows in some partition.
    unsafe fn has_rows(&self, _stmt: *mut pg_sys::AlterTableStmt, relid: Oid) -> bool {
        match pg_sys::get_rel_relkind(relid) as u8 {
            b'v' => false,
            b'r' | b'm' => light_look(relid, |rel| {
                pg_sys::RelationGetNumberOfBlocksInFork(rel, pg_sys::ForkNumber::MAIN_FORKNUM) > 0
            })
            .unwrap_or(true),
            _ => true,
        }
    }

    /// Do the table's validated CHECK constraints (or its NOT NULL columns) prove that
    /// column `attnum` holds no NULL? Then PostgreSQL skips SET NOT NULL's scan. The
    /// server answers, as ALTER TABLE does: `col IS NOT NULL` tested with
    /// PartConstraintImpliedByRelConstraint, on a `light_look` at the table (no wait,
    /// no lock kept: the hook runs before lock safety, and before PostgreSQL's own
    /// checks). When the table cannot be looked at right now, the answer is "no".
    unsafe fn not_null_proven(
        &self,
        _stmt: *mut pg_sys::AlterTableStmt,
        relid: Oid,
        attnum: i16,
    ) -> bool {
        let (mut typid, mut typmod, mut coll) = (pg_sys::InvalidOid, -1, pg_sys::InvalidOid);
        pg_sys::get_atttypetypmodcoll(relid, attnum, &mut typid, &mut typmod, &mut coll);
        if typid == pg_sys::InvalidOid {
            return false;
        }
        light_look(relid, |rel| {
            let test =
                pg_sys::palloc0(std::mem::size_of::<pg_sys::NullTest>()) as *mut pg_sys::NullTest;
            (*test).xpr.type_ = NodeTag::T_NullTest;
            (*test).arg = pg_sys::makeVar(1, attnum, typid, typmod, coll, 0) as *mut pg_sys::Expr;
            (*test).nulltesttype = pg_sys::NullTestType::IS_NOT_NULL;
            (*test).argisrow = false;
            (*test).location = -1;
            pg_sys::PartConstraintImpliedByRelConstraint(
                rel,
                pg_sys::lappend(std::ptr::null_mut(), test.cast()),
            )
        })
        .unwrap_or(false)
    }

    /// Is the table known to be empty (no data blocks), by a `light_look`? A table
    /// that cannot be looked at right now, or a partitioned one, is not known to be.
    unsafe fn known_empty(&self, relid: Oid) -> bool {
        pg_sys::get_rel_relkind(relid) as u8 == b'r'
            && light_look(relid, |rel| {
                pg_sys::RelationGetNumberOfBlocksInFork(rel, pg_sys::ForkNumber::MAIN_FORKNUM) == 0
            })
            .unwrap_or(false)
    }

    /// Does the partitioned table have a default partition with rows?
    unsafe fn populated_default_partition(&self, parent: Oid) -> bool {
        let def: Option<i64> = spi::one(
            As::Caller,
            "SELECT partdefid::int8 FROM pg_catalog.pg_partitioned_table \
              WHERE partrelid = $1 AND partdefid <> 0",
            &[parent.into()],
        );
        match def {
            Some(d) => !self.known_empty(Oid::from(d as u32)),
            None => false,
        }
    }

    /// PRIMARY KEY USING INDEX sets NOT NULL on the index's columns: a nullable one is
    /// scanned under ACCESS EXCLUSIVE, as SET NOT NULL is (unless a CHECK proves it).
    unsafe fn constraint_using_index(
        &mut self,
        stmt: *mut pg_sys::AlterTableStmt,
        table: &Obj,
        c: *mut pg_sys::Constraint,
    ) {
        if (*c).contype != pg_sys::ConstrType::CONSTR_PRIMARY {
            return;
        }
        let Some(idx) = cstr((*c).indexname) else {
            return;
        };
        let nsp = pg_sys::get_rel_namespace(table.addr.objectId);
        let Ok(cidx) = CString::new(idx) else {
            return;
        };
        let idxid = pg_sys::get_relname_relid(cidx.as_ptr(), nsp);
        if idxid == pg_sys::InvalidOid {
            return;
        }
        const NULLABLE: &str = "SELECT a.attnum::int4 FROM pg_catalog.pg_index i \
               JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid \
                AND a.attnum OPERATOR(pg_catalog.=) ANY (i.indkey::int2[]) \
              WHERE i.indexrelid = $1 AND NOT a.attnotnull AND a.attnum > 0 ORDER BY 1";
        let cols: Vec<i32> = spi::select(As::Caller, NULLABLE, &[idxid.into()], |t| {
            let mut out = Vec::new();
            for row in t {
                out.push(row.get::<i32>(1)?.unwrap_or(0));
            }
            Ok(out)
        });
        for attnum in cols {
            let name = cstr(pg_sys::get_attname(
                table.addr.objectId,
                attnum as i16,
                true,
            ))
            .unwrap_or_default();
            if let Some((col, a)) = self.column(table, &name) {
                if !self.not_null_proven(stmt, table.addr.objectId, a) {
                    self.add(RuleId::SetNotNull, col.display).facts.push(
                        "PRIMARY KEY USING INDEX sets NOT NULL on this nullable column".into(),
                    );
                }
            }
        }
    }

    /// The first volatile function a raw default expression calls, if any. Looks
    /// the name up in the pg_proc syscache (no SPI: this runs for every ADD COLUMN
    /// with a default): any overload marked volatile in the named schema, or — for an
    /// unqualified name — in pg_catalog or a schema on the search_path, counts.
    unsafe fn volatile_function(&self, expr: *mut Node) -> Option<String> {
        let mut calls = Vec::new();
        collect_func_calls(expr, &mut calls);
        if calls.is_empty() {
            return None;
        }
        let path: Vec<Oid> = PgList::<Oid>::from_pg(pg_sys::fetch_search_path(true))
            .iter_oid()
            .collect();
        for names in calls {
            let l = nodes(names);
            let fname = CString::new(strval(*l.last()?)).ok()?;
            let schema = if l.len() >= 2 {
                let s = CString::new(strval(l[l.len() - 2])).ok()?;
                Some(pg_sys::get_namespace_oid(s.as_ptr(), true))
            } else {
                None
            };
            let list = pg_sys::SearchSysCacheList(
                pg_sys::SysCacheIdentifier::PROCNAMEARGSNSP as _,
                1,
                pg_sys::Datum::from(fname.as_ptr()),
                pg_sys::Datum::from(0usize),
                pg_sys::Datum::from(0usize),
            );
            let mut volatile = false;
            for i in 0..(*list).n_members as usize {
                let ct = *(*list).members.as_ptr().add(i);
                let tup = &(*ct).tuple;
                let form = (tup.t_data as *mut u8).add((*tup.t_data).t_hoff as usize)
                    as *const pg_sys::FormData_pg_proc;
                let nsp = (*form).pronamespace;
                let visible = match schema {
                    Some(s) => nsp == s,
                    None => path.contains(&nsp),
                };
                if visible && (*form).provolatile as u8 == b'v' {
                    volatile = true;
                    break;
                }
            }
            pg_sys::ReleaseCatCacheList(list);
            if volatile {
                return Some(name_list(names));
            }
        }
        None
    }

    unsafe fn alter_column_type(
        &mut self,
        table: Option<&Obj>,
        coldisplay: String,
        colname: &str,
        def: *mut Node,
    ) {
        if def.is_null() || tag(def) != NodeTag::T_ColumnDef {
            return;
        }
        let cd = def as *mut pg_sys::ColumnDef;
        let computed_using =
            !(*cd).raw_default.is_null() && !is_plain_column((*cd).raw_default, colname);
        let mut new_typmod = -1;
        let t = pg_sys::LookupTypeName(std::ptr::null_mut(), (*cd).typeName, &mut new_typmod, true);
        let old = table.and_then(|tb| {
            let c = CString::new(colname).ok()?;
            let attnum = pg_sys::get_attnum(tb.addr.objectId, c.as_ptr());
            (attnum != 0).then(|| {
                let (mut typid, mut typmod, mut coll) =
                    (pg_sys::InvalidOid, -1, pg_sys::InvalidOid);
                pg_sys::get_atttypetypmodcoll(
                    tb.addr.objectId,
                    attnum,
                    &mut typid,
                    &mut typmod,
                    &mut coll,
                );
                (typid, typmod)
            })
        });
        if t.is_null() {
            return; // unknown type: the statement fails by itself
        }
        let new_oid = pg_sys::typeTypeId(t);
        pg_sys::ReleaseSysCache(t);
        let Some((old_oid, old_typmod)) = old else {
            let f = self.add(RuleId::AlterColumnTypeRewrite, coldisplay);
            f.facts
                .push("The column's current type is unknown here; assuming a rewrite".into());
            return;
        };
        let (o, oshown) = col_type(old_oid, old_typmod);
        let (n, nshown) = col_type(new_oid, new_typmod);
        let mut ob = o.typmod;
        let base_old = pg_sys::getBaseTypeAndTypmod(old_oid, &mut ob);
        let mut nb = n.typmod;
        let base_new = pg_sys::getBaseTypeAndTypmod(new_oid, &mut nb);
        let coercible = pg_sys::IsBinaryCoercible(base_old, base_new);
        let fact = format!("Type {oshown} -> {nshown}");
        match typechange::classify(&o, &n, coercible, computed_using) {
            TypeChange::Free => {}
            TypeChange::Rewrite(why) => {
                let f = self.add(RuleId::AlterColumnTypeRewrite, coldisplay);
                f.facts.push(fact);
                f.facts.push(why);
            }
            TypeChange::Lossy(why) => {
                let f = self.add(RuleId::AlterColumnTypeLossy, coldisplay);
                f.facts.push(fact);
                f.facts.push(why);
            }
        }
    }
}

/// The table a trigger is on.
unsafe fn trigger_table(trigger: Oid) -> Option<Oid> {
    spi::one::<Oid>(
        As::Superuser,
        "SELECT t.tgrelid FROM pg_catalog.pg_trigger t WHERE t.oid OPERATOR(pg_catalog.=) $1",
        &[trigger.into()],
    )
}

/// The existing table whose rows the statement's work goes over (ALTER TABLE, CREATE
/// INDEX, CLUSTER, REFRESH, VACUUM of one table, REINDEX TABLE / INDEX).
unsafe fn statement_table(node: *mut Node) -> Option<Oid> {
    let rv = match tag(node) {
        NodeTag::T_AlterTableStmt => (*(node as *mut pg_sys::AlterTableStmt)).relation,
        NodeTag::T_IndexStmt => (*(node as *mut pg_sys::IndexStmt)).relation,
        NodeTag::T_ClusterStmt => (*(node as *mut pg_sys::ClusterStmt)).relation,
        NodeTag::T_RefreshMatViewStmt => (*(node as *mut pg_sys::RefreshMatViewStmt)).relation,
        NodeTag::T_ReindexStmt => (*(node as *mut pg_sys::ReindexStmt)).relation,
        NodeTag::T_VacuumStmt => {
            let rels = nodes((*(node as *mut pg_sys::VacuumStmt)).rels);
            match rels.as_slice() {
                [one] if tag(*one) == NodeTag::T_VacuumRelation => {
                    (*(*one as *mut pg_sys::VacuumRelation)).relation
                }
                _ => return None,
            }
        }
        _ => return None,
    };
    if rv.is_null() {
        return None;
    }
    let mut relid = relid_of(rv);
    if relid == pg_sys::InvalidOid {
        return None;
    }
    if matches!(pg_sys::get_rel_relkind(relid) as u8, b'i' | b'I') {
        relid = pg_sys::IndexGetRelation(relid, true);
    }
    (relid != pg_sys::InvalidOid).then_some(relid)
}

/// The table an UPDATE, a DELETE or an INSERT … SELECT … FROM writes (a backfill);
/// INSERT … VALUES adds a few rows and is not one.
unsafe fn dml_target(node: *mut Node) -> Option<Oid> {
    let rv = match tag(node) {
        NodeTag::T_UpdateStmt => (*(node as *mut pg_sys::UpdateStmt)).relation,
        NodeTag::T_DeleteStmt => (*(node as *mut pg_sys::DeleteStmt)).relation,
        NodeTag::T_InsertStmt => {
            let s = node as *mut pg_sys::InsertStmt;
            let sel = (*s).selectStmt;
            if sel.is_null()
                || tag(sel) != NodeTag::T_SelectStmt
                || (*(sel as *mut pg_sys::SelectStmt)).fromClause.is_null()
            {
                return None;
            }
            (*s).relation
        }
        _ => return None,
    };
    let relid = relid_of(rv);
    (relid != pg_sys::InvalidOid).then_some(relid)
}

/// The existing table an ALTER TABLE locks ACCESS EXCLUSIVE (as PostgreSQL computes
/// the lock: AlterTableGetLockLevel), or that a RENAME renames.
unsafe fn exclusive_lock_target(node: *mut Node) -> Option<Oid> {
    let rv = match tag(node) {
        NodeTag::T_AlterTableStmt => {
            let s = node as *mut pg_sys::AlterTableStmt;
            if pg_sys::AlterTableGetLockLevel((*s).cmds) != pg_sys::AccessExclusiveLock as i32 {
                return None;
            }
            (*s).relation
        }
        NodeTag::T_RenameStmt => {
            let s = node as *mut pg_sys::RenameStmt;
            use pg_sys::ObjectType::*;
            if !matches!((*s).renameType, OBJECT_TABLE | OBJECT_COLUMN) {
                return None;
            }
            (*s).relation
        }
        _ => return None,
    };
    if rv.is_null() {
        return None;
    }
    let relid = relid_of(rv);
    (relid != pg_sys::InvalidOid
        && matches!(pg_sys::get_rel_relkind(relid) as u8, b'r' | b'p' | b'm'))
    .then_some(relid)
}

/// The first of `values` that the statement uses as a string constant, in a DML
/// statement, a column default, a CHECK or an index predicate or expression.
unsafe fn uses_string_constant(node: *mut Node, values: &[String]) -> Option<String> {
    let mut roots: Vec<*mut Node> = Vec::new();
    let column = |cd: *mut pg_sys::ColumnDef, roots: &mut Vec<*mut Node>| {
        roots.push((*cd).raw_default);
        for c in nodes((*cd).constraints) {
            if tag(c) == NodeTag::T_Constraint {
                roots.push((*(c as *mut pg_sys::Constraint)).raw_expr);
            }
        }
    };
    match tag(node) {
        NodeTag::T_SelectStmt
        | NodeTag::T_InsertStmt
        | NodeTag::T_UpdateStmt
        | NodeTag::T_DeleteStmt => roots.push(node),
        #[cfg(not(any(feature = "pg13", feature = "pg14")))]
        NodeTag::T_MergeStmt => roots.push(node),
        NodeTag::T_AlterTableStmt => {
            for c in nodes((*(node as *mut pg_sys::AlterTableStmt)).cmds) {
                if tag(c) != NodeTag::T_AlterTableCmd {
                    continue;
                }
                let def = (*(c as *mut pg_sys::AlterTableCmd)).def;
                if def.is_null() {
                    continue;
                }
                match tag(def) {
                    NodeTag::T_ColumnDef => column(def as *mut pg_sys::ColumnDef, &mut roots),
                    NodeTag::T_Constraint => {
                        roots.push((*(def as *mut pg_sys::Constraint)).raw_expr)
                    }
                    _ if (*(c as *mut pg_sys::AlterTableCmd)).subtype
                        == pg_sys::AlterTableType::AT_ColumnDefault =>
                    {
                        roots.push(def)
                    }
                    _ => {}
                }
            }
        }
        NodeTag::T_CreateStmt => {
            for e in nodes((*(node as *mut pg_sys::CreateStmt)).tableElts) {
                match tag(e) {
                    NodeTag::T_ColumnDef => column(e as *mut pg_sys::ColumnDef, &mut roots),
                    NodeTag::T_Constraint => roots.push((*(e as *mut pg_sys::Constraint)).raw_expr),
                    _ => {}
                }
            }
        }
        NodeTag::T_IndexStmt => {
            let s = node as *mut pg_sys::IndexStmt;
            roots.push((*s).whereClause);
            for p in nodes((*s).indexParams) {
                if tag(p) == NodeTag::T_IndexElem {
                    roots.push((*(p as *mut pg_sys::IndexElem)).expr);
                }
            }
        }
        _ => {}
    }
    let mut search = ConstSearch {
        values,
        found: None,
    };
    for r in roots.into_iter().filter(|r| !r.is_null()) {
        if const_walker(r, (&mut search as *mut ConstSearch).cast()) {
            break;
        }
    }
    search.found
}

struct ConstSearch<'a> {
    values: &'a [String],
    found: Option<String>,
}

/// raw_expression_tree_walker's callback: stops at a string constant in `values`.
#[pg_guard]
unsafe extern "C-unwind" fn const_walker(node: *mut Node, cx: *mut std::ffi::c_void) -> bool {
    if node.is_null() {
        return false;
    }
    pg_sys::check_stack_depth();
    let search = &mut *(cx as *mut ConstSearch);
    if tag(node) == NodeTag::T_A_Const {
        if let Some(t) = const_text(node) {
            if search.values.contains(&t) {
                search.found = Some(t);
                return true;
            }
        }
        return false;
    }
    pg_sys::raw_expression_tree_walker(node, Some(const_walker), cx)
}

/// Looks at a relation without waiting and without keeping a lock: ACCESS SHARE (what
/// a SELECT takes) if it can be had right now — a conditional request, which also
/// yields to sessions already queued for the table — held only while `f` runs. None
/// when the lock is not free or the relation is gone. The hook runs before lock safety
/// and before PostgreSQL's own checks: it must neither queue for a lock (that would
/// block every later query on the table, with no lock_timeout) nor take one before the
/// statement's own lock order (a partition before its parent: deadlocks).
///
/// Only for a caller who may read the table (SELECT): whether it is empty, or what its
/// constraints prove, is no secret to them — and nobody else learns it from a warning
/// or from check().
unsafe fn light_look<R>(relid: Oid, f: impl FnOnce(pg_sys::Relation) -> R) -> Option<R> {
    let lock = pg_sys::AccessShareLock as pg_sys::LOCKMODE;
    if pg_sys::pg_class_aclcheck(relid, pg_sys::GetUserId(), pg_sys::ACL_SELECT as _)
        != pg_sys::AclResult::ACLCHECK_OK
        || !pg_sys::ConditionalLockRelationOid(relid, lock)
    {
        return None;
    }
    let rel = pg_sys::try_relation_open(relid, pg_sys::NoLock as _);
    let r = if rel.is_null() {
        None
    } else {
        let r = f(rel);
        pg_sys::relation_close(rel, pg_sys::NoLock as _);
        Some(r)
    };
    pg_sys::UnlockRelationOid(relid, lock);
    r
}

/// The last part of a RangeVar's name, lower-case as parsed.
unsafe fn rv_last(rv: *mut pg_sys::RangeVar) -> Option<String> {
    if rv.is_null() {
        return None;
    }
    cstr((*rv).relname)
}

/// ADD GENERATED … AS IDENTITY with a START WITH of its own.
unsafe fn identity_has_start(def: *mut Node) -> bool {
    if def.is_null() || tag(def) != NodeTag::T_Constraint {
        return false;
    }
    defelem_names((*(def as *mut pg_sys::Constraint)).options)
        .iter()
        .any(|d| d == "start")
}

/// The options of an ALTER SEQUENCE that can stop an existing sequence or make it
/// repeat values: a narrower AS type, a (lower) MAXVALUE or MINVALUE, CYCLE.
unsafe fn sequence_limits(l: *mut pg_sys::List) -> Vec<&'static str> {
    let mut out = Vec::new();
    for d in nodes(l) {
        if tag(d) != NodeTag::T_DefElem {
            continue;
        }
        let d = d as *mut pg_sys::DefElem;
        let arg = (*d).arg;
        match cstr((*d).defname).as_deref() {
            Some("as") => {
                let t = if arg.is_null() || tag(arg) != NodeTag::T_TypeName {
                    String::new()
                } else {
                    name_list((*(arg as *mut pg_sys::TypeName)).names)
                };
                if !t.ends_with("int8") && !t.ends_with("bigint") {
                    out.push("AS (a narrower type)");
                }
            }
            Some("maxvalue") if !arg.is_null() => out.push("MAXVALUE"),
            Some("minvalue") if !arg.is_null() => out.push("MINVALUE"),
            Some("cycle") if pg_sys::defGetBoolean(d) => out.push("CYCLE"),
            _ => {}
        }
    }
    out
}

/// Does RESTART WITH move an ascending sequence past the last value it handed out
/// (as after a data import)? Then it cannot hand out a used value. Asked of the
/// server with the caller's rights: without them the answer is no.
unsafe fn restarts_forward(seq: Oid, options: *mut pg_sys::List) -> bool {
    // An integer constant only: anything else (1.5, a number beyond bigint) is for
    // PostgreSQL to reject, after its own checks — here it is "not forward".
    let to = nodes(options).into_iter().find_map(|d| {
        let d = d as *mut pg_sys::DefElem;
        (tag(d.cast()) == NodeTag::T_DefElem
            && cstr((*d).defname).as_deref() == Some("restart")
            && !(*d).arg.is_null()
            && tag((*d).arg) == NodeTag::T_Integer)
            .then(|| pg_sys::defGetInt64(d))
    });
    let Some(to) = to else {
        return false; // RESTART alone goes back to the start value
    };
    sequence_moves_forward(seq, to, false)
}

/// The `setval('name', n)` calls of a statement with a constant name and value.
unsafe fn setval_calls(node: *mut Node) -> Vec<(String, i64)> {
    let mut out: Vec<(String, i64)> = Vec::new();
    pg_sys::raw_expression_tree_walker(
        node,
        Some(setval_walker),
        (&mut out as *mut Vec<(String, i64)>).cast(),
    );
    out
}

#[pg_guard]
unsafe extern "C-unwind" fn setval_walker(node: *mut Node, cx: *mut std::ffi::c_void) -> bool {
    if node.is_null() {
        return false;
    }
    pg_sys::check_stack_depth();
    if tag(node) == NodeTag::T_FuncCall {
        let f = node as *mut pg_sys::FuncCall;
        let name = nodes((*f).funcname)
            .last()
            .map(|n| strval(*n))
            .unwrap_or_default();
        let args = nodes((*f).args);
        if name == "setval" && args.len() >= 2 {
            if let (Some(seq), Some(to)) = (const_text(args[0]), const_int(args[1])) {
                (*(cx as *mut Vec<(String, i64)>)).push((seq, to));
            }
        }
    }
    pg_sys::raw_expression_tree_walker(node, Some(setval_walker), cx)
}

/// Does setval(seq, to) leave an ascending sequence at or past the last value it
/// handed out? The name is resolved as the server would (the caller's search_path); a
/// sequence that is not here (the input creates it) is not judged; one the caller may
/// not read counts as no.
unsafe fn setval_forward(seq: &str, to: i64) -> bool {
    // Only plain (unquoted) names: anything else would make the name parser raise
    // an error here, in check(), rather than when the statement runs.
    let parts: Vec<&str> = seq.split('.').collect();
    // (Three parts would name a database: PostgreSQL raises an error for any other.)
    let plain = parts.len() <= 2
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_alphanumeric() || c == '_' || c == '$')
        });
    let (true, Ok(name)) = (plain, CString::new(seq)) else {
        return true;
    };
    #[cfg(any(feature = "pg13", feature = "pg14", feature = "pg15"))]
    let names = pg_sys::stringToQualifiedNameList(name.as_ptr());
    #[cfg(not(any(feature = "pg13", feature = "pg14", feature = "pg15")))]
    let names = pg_sys::stringToQualifiedNameList(name.as_ptr(), std::ptr::null_mut());
    let relid = relid_of(pg_sys::makeRangeVarFromNameList(names));
    if relid == pg_sys::InvalidOid {
        return true;
    }
    sequence_moves_forward(relid, to, true)
}

/// Does an ascending sequence set to `to` stay past the last value it handed out?
/// `to_is_last`: `to` counts as handed out (setval's default is_called), so reaching
/// the last value exactly is still forward; RESTART WITH must go beyond it.
/// Asked with the caller's rights: a sequence they may not read counts as no.
unsafe fn sequence_moves_forward(seq: Oid, to: i64, to_is_last: bool) -> bool {
    spi::one::<bool>(
        As::Caller,
        "SELECT s.seqincrement > 0 \
                AND CASE WHEN $3 THEN $2 >= coalesce(pg_catalog.pg_sequence_last_value(s.seqrelid), s.seqstart - 1) \
                         ELSE $2 > coalesce(pg_catalog.pg_sequence_last_value(s.seqrelid), s.seqstart - 1) END \
           FROM pg_catalog.pg_sequence s \
          WHERE s.seqrelid = $1 \
            AND pg_catalog.has_sequence_privilege(s.seqrelid, 'SELECT,USAGE')",
        &[seq.into(), to.into(), to_is_last.into()],
    )
    .unwrap_or(false)
}

/// Is the type a domain with constraints?
unsafe fn domain_has_constraints(typ: *mut pg_sys::TypeName) -> bool {
    let mut typmod = -1;
    let t = pg_sys::LookupTypeName(std::ptr::null_mut(), typ, &mut typmod, true);
    if t.is_null() {
        return false;
    }
    let typid = pg_sys::typeTypeId(t);
    pg_sys::ReleaseSysCache(t);
    pg_sys::get_typtype(typid) as u8 == b'd' && pg_sys::DomainHasConstraints(typid)
}

/// pg_index.indisvalid of an index (None: not an index).
unsafe fn index_valid(relid: Oid) -> Option<bool> {
    spi::one::<bool>(
        As::Caller,
        "SELECT indisvalid FROM pg_catalog.pg_index WHERE indexrelid = $1",
        &[relid.into()],
    )
}

/// Does the table have a row-level security policy?
unsafe fn table_has_policy(relid: Oid) -> bool {
    spi::one::<bool>(
        As::Caller,
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_policy WHERE polrelid = $1)",
        &[relid.into()],
    )
    .unwrap_or(false)
}

/// A LOCK TABLE mode's name.
fn lock_mode_name(mode: i32) -> &'static str {
    match mode as u32 {
        pg_sys::AccessShareLock => "ACCESS SHARE",
        pg_sys::RowShareLock => "ROW SHARE",
        pg_sys::RowExclusiveLock => "ROW EXCLUSIVE",
        pg_sys::ShareUpdateExclusiveLock => "SHARE UPDATE EXCLUSIVE",
        pg_sys::ShareLock => "SHARE",
        pg_sys::ShareRowExclusiveLock => "SHARE ROW EXCLUSIVE",
        pg_sys::ExclusiveLock => "EXCLUSIVE",
        _ => "ACCESS EXCLUSIVE",
    }
}

/// Is a raw WHERE clause the constant true (`WHERE true`, `WHERE 't'::bool`)?
unsafe fn constant_true(n: *mut Node) -> bool {
    if n.is_null() {
        return false;
    }
    match tag(n) {
        #[cfg(not(any(feature = "pg13", feature = "pg14")))]
        NodeTag::T_A_Const => {
            let c = n as *mut pg_sys::A_Const;
            !(*c).isnull && (*c).val.node.type_ == NodeTag::T_Boolean && (*c).val.boolval.boolval
        }
        NodeTag::T_TypeCast => {
            let tc = n as *mut pg_sys::TypeCast;
            let arg = (*tc).arg;
            let to = name_list((*(*tc).typeName).names);
            (to == "pg_catalog.bool" || to == "bool" || to == "boolean")
                && !arg.is_null()
                && tag(arg) == NodeTag::T_A_Const
                && matches!(const_text(arg).as_deref(), Some("t" | "true"))
        }
        _ => false,
    }
}

/// REPLICA IDENTITY's kind: d(efault), n(othing), f(ull), i(ndex).
unsafe fn replica_identity_kind(def: *mut Node) -> Option<u8> {
    (!def.is_null() && tag(def) == NodeTag::T_ReplicaIdentityStmt)
        .then(|| (*(def as *mut pg_sys::ReplicaIdentityStmt)).identity_type as u8)
}

/// Is a USING expression just the column itself, possibly cast?
unsafe fn is_plain_column(n: *mut Node, colname: &str) -> bool {
    // A chain of casts is as deep as the client makes it.
    pg_sys::check_stack_depth();
    match tag(n) {
        NodeTag::T_ColumnRef => {
            let fields = nodes((*(n as *mut pg_sys::ColumnRef)).fields);
            fields
                .last()
                .map(|f| tag(*f) == NodeTag::T_String && strval(*f) == colname)
                .unwrap_or(false)
        }
        NodeTag::T_TypeCast => is_plain_column((*(n as *mut pg_sys::TypeCast)).arg, colname),
        _ => false,
    }
}

/// Collects the name lists of every function call in a raw expression.
unsafe fn collect_func_calls(n: *mut Node, out: &mut Vec<*mut pg_sys::List>) {
    if n.is_null() {
        return;
    }
    // The hook runs before PostgreSQL's own analysis (and permission checks): an
    // expression is as deep as the client makes it (`1+1+…+1`). Too deep is an
    // ordinary ERROR here, as it would be in the parser's analysis.
    pg_sys::check_stack_depth();
    pgrx::check_for_interrupts!();
    match tag(n) {
        NodeTag::T_FuncCall => {
            let f = n as *mut pg_sys::FuncCall;
            out.push((*f).funcname);
            for a in nodes((*f).args) {
                collect_func_calls(a, out);
            }
        }
        NodeTag::T_TypeCast => collect_func_calls((*(n as *mut pg_sys::TypeCast)).arg, out),
        NodeTag::T_A_Expr => {
            let e = n as *mut pg_sys::A_Expr;
            collect_func_calls((*e).lexpr, out);
            collect_func_calls((*e).rexpr, out);
        }
        NodeTag::T_BoolExpr => {
            for a in nodes((*(n as *mut pg_sys::BoolExpr)).args) {
                collect_func_calls(a, out);
            }
        }
        NodeTag::T_CoalesceExpr => {
            for a in nodes((*(n as *mut pg_sys::CoalesceExpr)).args) {
                collect_func_calls(a, out);
            }
        }
        NodeTag::T_MinMaxExpr => {
            for a in nodes((*(n as *mut pg_sys::MinMaxExpr)).args) {
                collect_func_calls(a, out);
            }
        }
        NodeTag::T_CaseExpr => {
            let c = n as *mut pg_sys::CaseExpr;
            collect_func_calls((*c).arg.cast(), out);
            for w in nodes((*c).args) {
                let w = w as *mut pg_sys::CaseWhen;
                collect_func_calls((*w).expr.cast(), out);
                collect_func_calls((*w).result.cast(), out);
            }
            collect_func_calls((*c).defresult.cast(), out);
        }
        NodeTag::T_NullTest => collect_func_calls((*(n as *mut pg_sys::NullTest)).arg.cast(), out),
        NodeTag::T_List => {
            for a in nodes(n as *mut pg_sys::List) {
                collect_func_calls(a, out);
            }
        }
        _ => {}
    }
}

/// Does a DROP of `objtype` name a relation of another kind (DROP TABLE of a view)?
/// get_object_address would raise its own error for it, without the HINT PostgreSQL's
/// DROP gives ("Use DROP VIEW to remove a view.").
unsafe fn other_relation_kind(objtype: pg_sys::ObjectType::Type, object: *mut Node) -> bool {
    use pg_sys::ObjectType::*;
    let want: &[u8] = match objtype {
        OBJECT_TABLE => b"rp",
        OBJECT_VIEW => b"v",
        OBJECT_MATVIEW => b"m",
        OBJECT_SEQUENCE => b"S",
        OBJECT_FOREIGN_TABLE => b"f",
        OBJECT_INDEX => b"iI",
        _ => return false,
    };
    if object.is_null() || tag(object) != NodeTag::T_List {
        return false;
    }
    let rv = pg_sys::makeRangeVarFromNameList(object as *mut pg_sys::List);
    let relid = super::nodes::relid_of(rv);
    relid != pg_sys::InvalidOid && !want.contains(&(pg_sys::get_rel_relkind(relid) as u8))
}

/// Has the table inheritance children (or partitions)?
#[cfg(feature = "pg18")]
fn has_children(relid: Oid) -> bool {
    spi::one::<bool>(
        As::Caller,
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_inherits i WHERE i.inhparent OPERATOR(pg_catalog.=) $1)",
        &[relid.into()],
    )
    .unwrap_or(false)
}
