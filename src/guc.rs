//! Settings. All are PGC_SIGHUP: only the server configuration file sets them
//! (the hook also refuses SET / ALTER SYSTEM / ALTER ROLE|DATABASE SET on migsafe.*).

use crate::engine::policy::{parse_disabled_rules, Mode, Settings};
use pgrx::guc::{GucContext, GucFlags, GucRegistry, GucSetting};
use pgrx::pg_sys;
use pgrx::PostgresGucEnum;
use std::ffi::{c_char, c_void, CStr, CString};

#[derive(PostgresGucEnum, Clone, Copy, PartialEq, Eq, Debug)]
pub enum GucMode {
    #[name = c"enforce"]
    Enforce,
    #[name = c"warn"]
    Warn,
    #[name = c"off"]
    Off,
}

pub static MODE: GucSetting<GucMode> = GucSetting::<GucMode>::new(GucMode::Enforce);
pub static BLOCK_RISKY: GucSetting<bool> = GucSetting::<bool>::new(false);
pub static BLOCK_RISKY_ROWS: GucSetting<i32> = GucSetting::<i32>::new(-1);
pub static DISABLED_RULES: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
pub static MIN_EXPAND_AGE: GucSetting<i32> = GucSetting::<i32>::new(0);
pub static REQUIRE_APPROVAL: GucSetting<bool> = GucSetting::<bool>::new(false);
pub static APPROVERS_GRANTED_BY_SUPERUSER: GucSetting<bool> = GucSetting::<bool>::new(true);
pub static REQUIRE_BACKUP_WITHIN: GucSetting<i32> = GucSetting::<i32>::new(0);
pub static AUTO_SNAPSHOT: GucSetting<bool> = GucSetting::<bool>::new(true);
pub static RECYCLE: GucSetting<bool> = GucSetting::<bool>::new(true);
/// In kB (GUC_UNIT_KB): 1 GB.
pub static RECYCLE_MAX_BYTES: GucSetting<i32> = GucSetting::<i32>::new(1024 * 1024);
/// In seconds: 7 days.
pub static RECYCLE_RETENTION: GucSetting<i32> = GucSetting::<i32>::new(7 * 24 * 3600);
pub static AUDIT: GucSetting<bool> = GucSetting::<bool>::new(true);
pub static AUDIT_MAX_STATEMENT_BYTES: GucSetting<i32> = GucSetting::<i32>::new(65536);
pub static AUDIT_QUEUE_SIZE: GucSetting<i32> = GucSetting::<i32>::new(8192);
pub static AUDIT_DATABASES: GucSetting<i32> = GucSetting::<i32>::new(8);
pub static AUDIT_QUEUE_WAIT: GucSetting<i32> = GucSetting::<i32>::new(0);
pub static AUDIT_WORKER_IDLE: GucSetting<i32> = GucSetting::<i32>::new(10);
pub static WARN_DURATION: GucSetting<i32> = GucSetting::<i32>::new(30_000);
pub static ALERT_AFTER: GucSetting<i32> = GucSetting::<i32>::new(600_000);
pub static CRITICAL_AFTER: GucSetting<i32> = GucSetting::<i32>::new(1_800_000);
pub static LOCK_TIMEOUT: GucSetting<i32> = GucSetting::<i32>::new(5000);
pub static LOCK_RETRY_BUDGET: GucSetting<i32> = GucSetting::<i32>::new(20_000);
pub static CANCEL_BLOCKERS_AFTER: GucSetting<i32> = GucSetting::<i32>::new(0);
pub static DRIZZLE_TABLE: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(Some(c"drizzle.__drizzle_migrations"));

unsafe extern "C-unwind" {
    #[link_name = "pstrdup"]
    fn raw_pstrdup(s: *const c_char) -> *mut c_char;
}

/// Check hook of migsafe.disabled_rules: unknown or protected rule ids are rejected,
/// so a typo in postgresql.conf is reported at reload and the old value stays.
unsafe extern "C-unwind" fn check_disabled_rules(
    newval: *mut *mut c_char,
    _extra: *mut *mut c_void,
    _source: pg_sys::GucSource::Type,
) -> bool {
    if newval.is_null() || (*newval).is_null() {
        return true;
    }
    let s = CStr::from_ptr(*newval).to_string_lossy().into_owned();
    match parse_disabled_rules(&s) {
        Ok(_) => true,
        Err(e) => {
            let msg = CString::new(e.to_string()).unwrap_or_default();
            pg_sys::GUC_check_errdetail_string = raw_pstrdup(msg.as_ptr());
            false
        }
    }
}

pub fn init() {
    GucRegistry::define_enum_guc(
        c"migsafe.mode",
        c"enforce: refuse destructive DDL; warn: allow it with a WARNING; off: do nothing.",
        c"Only the server configuration file can set it (reload to apply).",
        &MODE,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"migsafe.block_risky",
        c"Refuse risky DDL (heavy locks, rewrites, scans) too, instead of warning.",
        c"Only the server configuration file can set it (reload to apply).",
        &BLOCK_RISKY,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"migsafe.block_risky_rows",
        c"Refuse risky work (rewrite, scan, index build) on a table with more rows than this, or of unknown size.",
        c"-1 (default): never; the planner's estimate (pg_class.reltuples) decides. Only the server configuration file can set it.",
        &BLOCK_RISKY_ROWS,
        -1,
        i32::MAX,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"migsafe.min_expand_age",
        c"How long the expand phase of a migration must have ended before its contract phase opens.",
        c"0 (default) allows the contract right after the expand; production: e.g. 24h.",
        &MIN_EXPAND_AGE,
        0,
        i32::MAX,
        GucContext::Sighup,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_bool_guc(
        c"migsafe.require_approval",
        c"Contract phases stay pending until a different member of migsafe_approver approves them.",
        c"Four eyes: nobody approves their own request.",
        &REQUIRE_APPROVAL,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"migsafe.approvers_granted_by_superuser",
        c"Only superusers, and roles whose membership in migsafe_approver or migsafe_admin was granted by a superuser, approve.",
        c"Closes the door a CREATEROLE holder has on PostgreSQL 13-15: granting migsafe_approver to a second login of its own.",
        &APPROVERS_GRANTED_BY_SUPERUSER,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"migsafe.require_backup_within",
        c"A contract phase opens only if a backup was recorded (or WAL archived) within this time.",
        c"0 (default) turns the check off.",
        &REQUIRE_BACKUP_WITHIN,
        0,
        i32::MAX,
        GucContext::Sighup,
        GucFlags::UNIT_S,
    );
    define_audit_gucs();
    define_snapshot_gucs();
    unsafe {
        GucRegistry::define_string_guc_with_hooks(
            c"migsafe.disabled_rules",
            c"Comma-separated rule ids that are never reported (self-protection rules excepted).",
            c"Only the server configuration file can set it (reload to apply).",
            &DISABLED_RULES,
            GucContext::Sighup,
            GucFlags::default(),
            Some(check_disabled_rules),
            None,
            None,
        );
        #[cfg(not(any(feature = "pg13", feature = "pg14")))]
        pg_sys::MarkGUCPrefixReserved(c"migsafe".as_ptr());
        #[cfg(any(feature = "pg13", feature = "pg14"))]
        pg_sys::EmitWarningsOnPlaceholders(c"migsafe".as_ptr());
    }
}

fn define_snapshot_gucs() {
    GucRegistry::define_bool_guc(
        c"migsafe.auto_snapshot",
        c"Snapshot what each migration's DDL touches before it runs; the audit log's migration row points to it.",
        c"Only the server configuration file can set it (reload to apply).",
        &AUTO_SNAPSHOT,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"migsafe.recycle",
        c"Approved DROP TABLE moves the table into schema migsafe_recycle; approved DROP COLUMN and TRUNCATE keep a copy.",
        c"Only the server configuration file can set it (reload to apply).",
        &RECYCLE,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"migsafe.recycle_max_bytes",
        c"Largest copy an approved DROP COLUMN or TRUNCATE may keep in the recycle bin.",
        c"Beyond it the statement is refused unless its contract phase says keep_data => false.",
        &RECYCLE_MAX_BYTES,
        0,
        i32::MAX,
        GucContext::Sighup,
        GucFlags::UNIT_KB,
    );
    GucRegistry::define_int_guc(
        c"migsafe.recycle_retention",
        c"How long the recycle bin keeps what approved statements dropped before the audit worker purges it.",
        c"0 keeps everything until migsafe.purge() is called.",
        &RECYCLE_RETENTION,
        0,
        i32::MAX,
        GucContext::Sighup,
        GucFlags::UNIT_S,
    );
}

/// Mode without allocating: the hook's fast path reads it on every statement.
pub fn mode() -> Mode {
    match MODE.get() {
        GucMode::Enforce => Mode::Enforce,
        GucMode::Warn => Mode::Warn,
        GucMode::Off => Mode::Off,
    }
}

pub fn settings() -> Settings {
    let disabled = DISABLED_RULES
        .get()
        .map(|c| parse_disabled_rules(&c.to_string_lossy()).unwrap_or_default())
        .unwrap_or_default();
    Settings {
        mode: mode(),
        block_risky: BLOCK_RISKY.get(),
        block_risky_rows: BLOCK_RISKY_ROWS.get() as i64,
        disabled_rules: disabled,
    }
}

fn int_guc(
    name: &'static std::ffi::CStr,
    short: &'static std::ffi::CStr,
    long: &'static std::ffi::CStr,
    setting: &'static GucSetting<i32>,
    (min, max): (i32, i32),
    context: GucContext,
    unit: GucFlags,
) {
    GucRegistry::define_int_guc(name, short, long, setting, min, max, context, unit);
}

fn define_audit_gucs() {
    let reload = c"Only the server configuration file can set it (reload to apply).";
    let restart = c"Only the server configuration file can set it (restart to apply).";
    GucRegistry::define_bool_guc(
        c"migsafe.audit",
        c"Record every classified DDL statement and every migration in the audit log.",
        reload,
        &AUDIT,
        GucContext::Sighup,
        GucFlags::default(),
    );
    int_guc(
        c"migsafe.audit_max_statement_bytes",
        c"Longest statement text stored in the audit log; longer text is cut and marked.",
        reload,
        &AUDIT_MAX_STATEMENT_BYTES,
        (256, 1 << 20),
        GucContext::Sighup,
        GucFlags::UNIT_BYTE,
    );
    int_guc(
        c"migsafe.audit_queue_size",
        c"Shared memory for queued audit records, split evenly between migsafe.audit_databases.",
        restart,
        &AUDIT_QUEUE_SIZE,
        (256, 1 << 20),
        GucContext::Postmaster,
        GucFlags::UNIT_KB,
    );
    int_guc(
        c"migsafe.audit_databases",
        c"How many databases can have audit records queued in shared memory at the same time (others queue them on disk).",
        restart,
        &AUDIT_DATABASES,
        (1, 256),
        GucContext::Postmaster,
        GucFlags::default(),
    );
    int_guc(
        c"migsafe.audit_queue_wait",
        c"How long a backend waits for room in a full audit queue before it puts the record in the backlog on disk.",
        reload,
        &AUDIT_QUEUE_WAIT,
        (0, 60_000),
        GucContext::Sighup,
        GucFlags::UNIT_MS,
    );
    int_guc(
        c"migsafe.audit_worker_idle",
        c"An audit writer with nothing to do for this long exits (it restarts on the next record).",
        reload,
        &AUDIT_WORKER_IDLE,
        (1, 3600),
        GucContext::Sighup,
        GucFlags::UNIT_S,
    );
    int_guc(
        c"migsafe.warn_duration",
        c"A migration that takes longer is flagged over budget in the audit log and announced.",
        reload,
        &WARN_DURATION,
        (0, i32::MAX),
        GucContext::Sighup,
        GucFlags::UNIT_MS,
    );
    int_guc(
        c"migsafe.alert_after",
        c"A migration still running after this long raises a warning-level event (0: never).",
        reload,
        &ALERT_AFTER,
        (0, i32::MAX),
        GucContext::Sighup,
        GucFlags::UNIT_MS,
    );
    int_guc(
        c"migsafe.critical_after",
        c"A migration still running after this long raises a critical event (0: never).",
        reload,
        &CRITICAL_AFTER,
        (0, i32::MAX),
        GucContext::Sighup,
        GucFlags::UNIT_MS,
    );
    int_guc(
        c"migsafe.lock_timeout",
        c"lock_timeout applied to DDL that needs an ACCESS EXCLUSIVE or SHARE ROW EXCLUSIVE lock on an existing table when lock_timeout is 0 (0: never).",
        reload,
        &LOCK_TIMEOUT,
        (0, i32::MAX),
        GucContext::Sighup,
        GucFlags::UNIT_MS,
    );
    int_guc(
        c"migsafe.lock_retry_budget",
        c"Time a transaction may spend retrying DDL whose table lock was not granted within migsafe.lock_timeout (waits and pauses together; 0: no retries).",
        reload,
        &LOCK_RETRY_BUDGET,
        (0, 600_000),
        GucContext::Sighup,
        GucFlags::UNIT_MS,
    );
    int_guc(
        c"migsafe.cancel_blockers_after",
        c"After retrying for this long, end the blocking sessions that are idle in transaction, where the migrating role may (0: never).",
        reload,
        &CANCEL_BLOCKERS_AFTER,
        (0, 600_000),
        GucContext::Sighup,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_string_guc(
        c"migsafe.drizzle_migrations_table",
        c"Drizzle's migrations table: hashes inserted there are recorded with the migration.",
        reload,
        &DRIZZLE_TABLE,
        GucContext::Sighup,
        GucFlags::default(),
    );
}
