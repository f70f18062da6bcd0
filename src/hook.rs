//! The DDL guard: what the ProcessUtility hook (`hooks.rs`) runs before and after
//! each utility statement.
//!
//! Discipline (as pgaudit does it): statements that are not DDL return straight away
//! with no allocation and no catalog access; the classification runs in a #[pg_guard]
//! function so no Rust panic crosses into PostgreSQL; `hooks` calls the next hook /
//! standard_ProcessUtility directly, not through pgrx's guard, so errors raised by the
//! statement itself reach the client untouched (SQLSTATE, position, CONTEXT). Nothing
//! with a destructor is alive in `before_statement`'s frame when a refusal is raised.

use crate::audit::backend as audit;
use crate::engine::audit::DecisionKind;
use crate::engine::phase::{approving_phase, target_of, PhaseKind, Target};
use crate::engine::policy::{
    approvable, approval_call, decide, refusal_note, render_approval, render_refusal,
    render_standby_refusal, render_warning, spent_note, Decision, Finding, Mode, Settings,
};
use crate::engine::rules::{RuleId, Severity};
use crate::guc;
use crate::phase;
use crate::recycle;
use crate::report::{self, PgReport, SQLSTATE_APPROVED, SQLSTATE_REFUSED, SQLSTATE_WARNING};
use crate::stmt::classify::Classifier;
use pgrx::pg_sys;
use pgrx::prelude::*;
use std::ffi::{c_char, CStr};

/// The statement's own text inside a query string that may hold several.
unsafe fn statement_text(pstmt: *mut pg_sys::PlannedStmt, query: *const c_char) -> String {
    if query.is_null() {
        return String::new();
    }
    crate::pgutil::statement_slice(
        CStr::from_ptr(query).to_bytes(),
        (*pstmt).stmt_location,
        (*pstmt).stmt_len,
    )
}

/// Classifies the statement and returns the reports to raise (terminated by an entry
/// with level 0), palloc'd in the current memory context, or null.
/// Also opens the statement's audit record: `*token` is what `audit_end` needs.
/// `nested`: run by a function or a DO block, not sent by the client.
#[pg_guard]
unsafe extern "C-unwind" fn inspect(
    pstmt: *mut pg_sys::PlannedStmt,
    query: *const c_char,
    token: *mut usize,
    nested: bool,
) -> *mut PgReport {
    let mut c = Classifier::new(false);
    c.classify((*pstmt).utilityStmt);
    // Credentials never go further than this: not into the audit log, a refusal or a
    // phase's record.
    let (text, credentials) =
        crate::redact::statement((*pstmt).utilityStmt, &statement_text(pstmt, query));
    if c.findings.is_empty() {
        *token = audit::begin(
            pstmt,
            nested,
            &text,
            credentials,
            &[],
            DecisionKind::Allowed,
            None,
        );
        return std::ptr::null_mut();
    }
    let settings = guc::settings();
    let findings = std::mem::take(&mut c.findings);
    let all = findings.clone();
    let reports: Vec<PgReport> = match decide(findings, &settings) {
        Decision::Allow => {
            *token = audit::begin(
                pstmt,
                nested,
                &text,
                credentials,
                &all,
                DecisionKind::Allowed,
                None,
            );
            return std::ptr::null_mut();
        }
        Decision::Warn(fs) => {
            *token = audit::begin(
                pstmt,
                nested,
                &text,
                credentials,
                &all,
                DecisionKind::Warned,
                None,
            );
            fs.iter()
                .map(|f| PgReport::new(pg_sys::WARNING, SQLSTATE_WARNING, &render_warning(f)))
                .collect()
        }
        Decision::Refuse(fs) => {
            let (reports, approved_by) = refuse_or_approve(fs, &settings, &text);
            let decision = if approved_by.is_some() {
                DecisionKind::Approved
            } else {
                DecisionKind::Refused
            };
            *token = audit::begin(
                pstmt,
                nested,
                &text,
                credentials,
                &all,
                decision,
                approved_by,
            );
            reports
        }
    };
    let out =
        pg_sys::palloc0(std::mem::size_of::<PgReport>() * (reports.len() + 1)) as *mut PgReport;
    for (i, r) in reports.into_iter().enumerate() {
        out.add(i).write(r);
    }
    out
}

/// A refusal, unless a phase of this session approves every destructive finding (then
/// the approving phase's id and name come back too).
fn refuse_or_approve(
    fs: Vec<Finding>,
    settings: &Settings,
    text: &str,
) -> (Vec<PgReport>, Option<(i64, String)>) {
    if unsafe { pg_sys::RecoveryInProgress() } {
        let r = render_standby_refusal(&fs, text);
        return (
            vec![PgReport::new(pg_sys::PGERROR, SQLSTATE_REFUSED, &r)],
            None,
        );
    }
    if settings.mode != Mode::Enforce || !approvable(&fs, settings) || !phase::available() {
        let r = render_refusal(&fs, settings, text, None, None);
        return (
            vec![PgReport::new(pg_sys::PGERROR, SQLSTATE_REFUSED, &r)],
            None,
        );
    }
    let targets: Vec<Option<Target>> = fs
        .iter()
        .map(|f| {
            target_of(&f.object).map(|t| Target {
                owner: t.owner.or_else(|| f.owner.clone()),
                ..t
            })
        })
        .collect();
    // A rollback approves exactly the statements of its plan.
    if let Some(id) = recycle::rollback_approves(text) {
        let rules: Vec<&str> = fs.iter().map(|f| f.rule.id.as_str()).collect();
        phase::record_use(id, &rules, &targets, text);
        let all: Vec<&Finding> = fs.iter().collect();
        let notice = render_approval(&all, &format!("rollback phase {id}"));
        recycle::note_approval(id);
        return (
            vec![PgReport::new(pg_sys::NOTICE, SQLSTATE_APPROVED, &notice)],
            Some((id, "rollback".into())),
        );
    }
    let active: Vec<_> = phase::session_phases()
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    if let Some(p) = approving_phase(&fs, &targets, &active) {
        let approved: Vec<&Finding> = fs
            .iter()
            .filter(|f| f.rule.severity == Severity::Destructive)
            .collect();
        let rules: Vec<&str> = approved.iter().map(|f| f.rule.id.as_str()).collect();
        phase::record_use(p.id, &rules, &targets, text);
        recycle::note_approval(p.id);
        if p.kind == PhaseKind::Standing {
            for f in &approved {
                if let (RuleId::DetachPartition, Some(part)) = (f.rule.id, &f.partition) {
                    crate::stmt::partition::note_detached(part);
                }
            }
        }
        let by = match p.kind {
            PhaseKind::Standing => "standing approval",
            _ => "contract phase",
        };
        let notice = render_approval(&approved, &format!("{by} {} ({})", p.id, p.name));
        let mut out = vec![PgReport::new(pg_sys::NOTICE, SQLSTATE_APPROVED, &notice)];
        out.extend(
            fs.iter()
                .filter(|f| f.rule.severity == Severity::Risky)
                .map(|f| PgReport::new(pg_sys::WARNING, SQLSTATE_WARNING, &render_warning(f))),
        );
        return (out, Some((p.id, p.name.clone())));
    }
    let note = refusal_note(&fs, &targets, &active)
        .or_else(|| spent_note(&fs, &targets, &phase::spent_phases()));
    let call = approval_call(&fs, &targets);
    let r = render_refusal(&fs, settings, text, call.as_deref(), note.as_deref());
    (
        vec![PgReport::new(pg_sys::PGERROR, SQLSTATE_REFUSED, &r)],
        None,
    )
}

#[inline]
unsafe fn should_inspect(
    stmt: *mut pg_sys::Node,
    context: pg_sys::ProcessUtilityContext::Type,
    ours: bool,
) -> bool {
    !stmt.is_null()
        && !crate::stmt::kind::is_fast_path(stmt)
        && guc::mode() != Mode::Off
        // The extension's own statement (migsafe._internal(), _run_as()): only that
        // one; what it sets off is inspected.
        && !ours
        // Another extension's install/update script (and our own) runs unchecked; the
        // CREATE/ALTER EXTENSION statement itself was classified before it started.
        && !pg_sys::creating_extension
        // Parts of a statement already classified (CREATE TABLE's indexes and FKs,
        // CREATE SCHEMA's elements, ADD COLUMN serial's sequence).
        && context != pg_sys::ProcessUtilityContext::PROCESS_UTILITY_SUBCOMMAND
}

unsafe fn check_statement(
    pstmt: *mut pg_sys::PlannedStmt,
    query: *const c_char,
    token: *mut usize,
    nested: bool,
) {
    let reports = inspect(pstmt, query, token, nested);
    if reports.is_null() {
        return;
    }
    let mut i = 0;
    while (*reports.add(i)).level != 0 {
        report::raise(&*reports.add(i));
        i += 1;
    }
    pg_sys::pfree(reports.cast());
}

/// Everything before the statement runs: classification (refusal or approval), the
/// audit record, lock safety, the automatic snapshot and the recycle bin. Returns true
/// when the statement has been carried out already (moved to the recycle bin).
/// Plain values only: a refusal longjmps through this frame.
#[inline]
pub(crate) unsafe fn before_statement(
    pstmt: *mut pg_sys::PlannedStmt,
    query_string: *const c_char,
    context: pg_sys::ProcessUtilityContext::Type,
    token: &mut usize,
    lock_watch: &mut bool,
) -> bool {
    let ours = recycle::take_ours();
    if !should_inspect((*pstmt).utilityStmt, context, ours) {
        return false;
    }
    let nested = context == pg_sys::ProcessUtilityContext::PROCESS_UTILITY_QUERY;
    check_statement(pstmt, query_string, token, nested);
    note_rebuilds((*pstmt).utilityStmt);
    *lock_watch = audit::lock_safety((*pstmt).utilityStmt);
    auto_snapshot((*pstmt).utilityStmt);
    let approved = recycle::take_approval();
    if approved == 0 || !guc::RECYCLE.get() {
        return false;
    }
    let mut refusal: *mut PgReport = std::ptr::null_mut();
    let carried_out = recycle_before(pstmt, query_string, approved, &mut refusal);
    if !refusal.is_null() {
        report::raise(&*refusal);
    }
    carried_out
}

/// After the statement ran: closes its audit record and lock-safety watch.
#[inline]
pub(crate) unsafe fn after_statement(token: usize, lock_watch: bool) {
    if token != 0 {
        audit_end(token);
    }
    if lock_watch {
        audit::lock_safety_end();
    }
}

/// ALTER COLUMN … TYPE builds the table's extended statistics again: what existed
/// before stays "not new" (see `track`).
#[pg_guard]
unsafe extern "C-unwind" fn note_rebuilds(stmt: *mut pg_sys::Node) {
    if let Some(relid) = crate::stmt::kind::retyped_table(stmt) {
        crate::track::note_statistics_of(relid);
    }
}

/// Snapshots what the statement reaches, once per migration (see `autosnap`).
#[pg_guard]
unsafe extern "C-unwind" fn auto_snapshot(stmt: *mut pg_sys::Node) {
    crate::autosnap::before(stmt);
}

/// Keeps what an approved statement would destroy (see `recycle`); true when the
/// statement has been carried out.
#[pg_guard]
unsafe extern "C-unwind" fn recycle_before(
    pstmt: *mut pg_sys::PlannedStmt,
    query: *const c_char,
    phase: i64,
    refusal: *mut *mut PgReport,
) -> bool {
    let text = statement_text(pstmt, query);
    match recycle::before((*pstmt).utilityStmt, text.trim(), phase) {
        recycle::Outcome::Run => false,
        recycle::Outcome::CarriedOut => true,
        recycle::Outcome::Refuse(r) => {
            // Raised by the caller, from a frame without destructors.
            let out = pg_sys::palloc0(std::mem::size_of::<PgReport>()) as *mut PgReport;
            out.write(PgReport::new(pg_sys::PGERROR, SQLSTATE_REFUSED, &r));
            *refusal = out;
            false
        }
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn audit_end(token: usize) {
    audit::end_ok(token);
}
