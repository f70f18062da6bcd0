//! Spool files: the durable trace of a running migration.
//!
//! Each backend that records migrations keeps one file,
//! `pg_migsafe/inflight/<backend start µs>-<pid>.spool` in the data directory. When a
//! migration starts, its start record is written at the start of the file
//! (`<db oid>\n<json>\n`; whatever follows the second line is left over from a longer
//! record and ignored) before its first statement runs; when it ends, after its end
//! record is queued, the first byte is overwritten with `-` (no migration running). A plain write is enough: the data of a process killed with SIGKILL is in the
//! kernel, so it survives the kill and the crash restart that follows. The file is
//! removed when the backend exits normally.
//!
//! After a crash restart every backend is new, so a file stamped before the restart
//! (shared memory's `initialized_us`) that is not empty names a migration that never
//! finished; the writer of its database records it as such (`never_finished`).
//!
//! One file per backend, rewritten in place, costs two system calls per migration and no
//! file creation (creating and deleting a file per migration made ext4's inode
//! allocation the largest cost of small DDL transactions).

use crate::engine::audit::{MigrationStart, Record};
use std::cell::RefCell;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

const DIR: &str = "pg_migsafe/inflight";

thread_local! {
    static FILE: RefCell<Option<File>> = const { RefCell::new(None) };
}

pub fn ensure_dir() {
    let _ = std::fs::create_dir_all(DIR);
}

fn own_path() -> PathBuf {
    let (start, pid) = (crate::pgutil::backend_start_unix_us(), unsafe {
        pgrx::pg_sys::MyProcPid
    });
    PathBuf::from(DIR).join(format!("{start}-{pid}.spool"))
}

unsafe extern "C-unwind" fn remove_own(_code: i32, _arg: pgrx::pg_sys::Datum) {
    FILE.with(|f| {
        if let Ok(mut f) = f.try_borrow_mut() {
            if f.take().is_some() {
                let _ = std::fs::remove_file(own_path());
            }
        }
    });
}

fn with_file<R>(f: impl FnOnce(&File) -> std::io::Result<R>) -> Option<R> {
    FILE.with(|cell| {
        let mut cell = cell.try_borrow_mut().ok()?;
        if cell.is_none() {
            let open = || File::create(own_path());
            let file = open()
                .or_else(|_| {
                    ensure_dir();
                    open()
                })
                .ok()?;
            unsafe { pgrx::pg_sys::on_proc_exit(Some(remove_own), pgrx::pg_sys::Datum::from(0)) };
            *cell = Some(file);
        }
        f(cell.as_ref()?).ok()
    })
}

/// The migration started: its start record goes to this backend's spool file. One
/// write, no truncation (freeing and reallocating the block costs more than the write).
pub fn begin(dboid: u32, start_json: &str) -> bool {
    let body = format!("{dboid}\n{start_json}\n");
    with_file(|f| f.write_all_at(body.as_bytes(), 0)).is_some()
}

/// The migration ended (its end record is queued): one byte marks the file idle.
pub fn end() {
    let _ = with_file(|f| f.write_all_at(b"-", 0));
}

/// The start record of the migration running in backend (start µs, pid), if any.
pub fn read_start(backend_start_us: i64, pid: i32) -> Option<MigrationStart> {
    let path = PathBuf::from(DIR).join(format!("{backend_start_us}-{pid}.spool"));
    let text = std::fs::read_to_string(path).ok()?;
    let mut lines = text.splitn(3, '\n');
    lines.next()?.parse::<u32>().ok()?;
    match serde_json::from_str::<Record>(lines.next()?).ok()? {
        Record::MigrationStart(s) => Some(s),
        _ => None,
    }
}

/// A spool file left by a backend of an earlier server lifetime.
pub struct Stale {
    pub path: PathBuf,
    pub dboid: Option<u32>,
    pub start: Option<MigrationStart>,
}

/// Files stamped before `since_us` (the last server start or crash restart).
pub fn stale(since_us: i64) -> Vec<Stale> {
    let Ok(rd) = std::fs::read_dir(DIR) else {
        return vec![];
    };
    rd.filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let stamp: i64 = name
                .strip_suffix(".spool")?
                .split('-')
                .next()?
                .parse()
                .ok()?;
            if stamp >= since_us {
                return None;
            }
            let text = std::fs::read_to_string(e.path()).unwrap_or_default();
            let mut lines = text.splitn(3, '\n');
            let (db, json) = (lines.next().unwrap_or(""), lines.next().unwrap_or(""));
            let start = serde_json::from_str::<Record>(json)
                .ok()
                .and_then(|r| match r {
                    Record::MigrationStart(s) => Some(s),
                    _ => None,
                });
            Some(Stale {
                path: e.path(),
                dboid: db.parse().ok(),
                start,
            })
        })
        .collect()
}

/// Databases with unfinished migrations from before `since_us`; empty stale files
/// (backends that crashed between migrations) are removed on the way.
pub fn stale_databases(since_us: i64) -> Vec<u32> {
    let mut v = Vec::new();
    for s in stale(since_us) {
        match (s.dboid, &s.start) {
            (Some(d), Some(_)) => v.push(d),
            _ => remove(&s.path),
        }
    }
    v.sort_unstable();
    v.dedup();
    v
}

pub fn remove(path: &PathBuf) {
    let _ = std::fs::remove_file(path);
}
