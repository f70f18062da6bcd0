//! Spool files: the durable trace of a running migration.
//!
//! The start of a migration is written to `pg_migsafe/inflight/<db oid>_<migration>.json`
//! in the data directory before its first statement runs (a plain write: a killed
//! backend's data is in the kernel, so it survives SIGKILL and the crash restart that
//! follows). The writer removes the file once the migration's end is stored. A file left
//! behind by a crash names a migration that never finished; the writer of its database
//! records it as such (`never_finished`).

use crate::engine::audit::{MigrationStart, Record};
use std::io::Write;
use std::path::PathBuf;

const DIR: &str = "pg_migsafe/inflight";

fn path(dboid: u32, key: &str) -> PathBuf {
    PathBuf::from(DIR).join(format!("{dboid}_{key}.json"))
}

pub fn ensure_dir() {
    let _ = std::fs::create_dir_all(DIR);
}

/// Writes the start of a migration. False if it could not be written.
pub fn write(dboid: u32, key: &str, start_json: &str) -> bool {
    let p = path(dboid, key);
    let attempt = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&p)?;
        f.write_all(start_json.as_bytes())
    };
    attempt().is_ok() || {
        ensure_dir();
        attempt().is_ok()
    }
}

pub fn remove(dboid: u32, key: &str) {
    let _ = std::fs::remove_file(path(dboid, key));
}

/// The migrations spooled for a database: key and start record (None if unreadable).
pub fn list(dboid: u32) -> Vec<(String, Option<MigrationStart>)> {
    let prefix = format!("{dboid}_");
    let Ok(rd) = std::fs::read_dir(DIR) else {
        return vec![];
    };
    rd.filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let key = name
                .strip_prefix(&prefix)?
                .strip_suffix(".json")?
                .to_string();
            let start = std::fs::read_to_string(e.path())
                .ok()
                .and_then(|t| serde_json::from_str::<Record>(&t).ok())
                .and_then(|r| match r {
                    Record::MigrationStart(s) => Some(s),
                    _ => None,
                });
            Some((key, start))
        })
        .collect()
}

/// Does the database have spool files left from before `since_us` (a crash)?
pub fn has_files(dboid: u32, since_us: i64) -> bool {
    list(dboid).iter().any(|(k, _)| {
        k.split('-')
            .next()
            .and_then(|s| s.parse::<i64>().ok())
            .is_some_and(|t| t < since_us)
    })
}

pub fn remove_all(dboid: u32) {
    for (key, _) in list(dboid) {
        remove(dboid, &key);
    }
}

/// Databases that have spool files.
pub fn databases() -> Vec<u32> {
    let Ok(rd) = std::fs::read_dir(DIR) else {
        return vec![];
    };
    let mut v: Vec<u32> = rd
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.split_once('_')?.0.parse().ok()
        })
        .collect();
    v.sort_unstable();
    v.dedup();
    v
}
