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
pub static DISABLED_RULES: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
pub static MIN_EXPAND_AGE: GucSetting<i32> = GucSetting::<i32>::new(0);
pub static REQUIRE_APPROVAL: GucSetting<bool> = GucSetting::<bool>::new(false);
pub static REQUIRE_BACKUP_WITHIN: GucSetting<i32> = GucSetting::<i32>::new(0);

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
        disabled_rules: disabled,
    }
}
