//! Spool files: every backend's journal of the records it produced that may not be in
//! the log yet, so that no crash loses a record a client was told about.
//!
//! Each backend that records statements keeps one file,
//! `pg_migsafe/inflight/<backend start µs>-<pid>.spool` in the data directory. A
//! migration's start record is written to it before the migration's first statement
//! runs; every record the backend then queues (statements, the migration's end, phase
//! events) is appended *before* it goes into shared memory, and the record of a failing
//! statement is appended as soon as its error is reported, before the client can see
//! the error. So whatever a client saw is on disk before it saw it. A plain write is
//! enough: the data of a process killed with SIGKILL is in the kernel, so it survives
//! the kill and the crash restart that follows (an operating-system crash is what
//! `synchronous_commit` and the WAL are for; the spool does not fsync).
//!
//! The file is rewritten from its beginning when the next migration starts and every
//! record it holds has left shared memory (stored by a writer; records that went to the
//! backlog are on disk there); otherwise the next migration is appended. A backend that
//! exits removes its file if so; otherwise it renames it to
//! `<backend start µs>-<pid>.<slot>_<position>[,…].exited`, naming where its last
//! records sit in the rings, and the launcher removes the file once the writers have
//! passed those positions. One file per
//! backend, rewritten in place, costs one write per record and no file creation
//! (creating and deleting a file per migration made ext4's inode allocation the
//! largest cost of small DDL transactions).
//!
//! Format: a header line `<db oid> <generation>`, then one line per record,
//! `<generation> <length> <json>`. Rewriting in place leaves older, longer content
//! behind the new lines: a line counts only with the header's generation and its exact
//! length, and reading stops at the first line that does not.
//!
//! After a crash restart every backend is new, so a file stamped before the restart
//! (shared memory's `initialized_us`) belongs to a backend that is gone; the writer of
//! its database stores what of it the log lacks (`engine::audit::recover`).

use crate::engine::audit::{MigrationStart, Record};
use std::cell::RefCell;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

const DIR: &str = "pg_migsafe/inflight";

struct Journal {
    file: File,
    generation: u64,
    /// Bytes of the current generation (where the next line goes).
    len: u64,
    /// Where the spooled records that went into rings sit (slot, position after the
    /// last one): the log holds them once every slot's tail has passed its position.
    marks: Vec<(usize, u64)>,
}

thread_local! {
    static JOURNAL: RefCell<Option<Journal>> = const { RefCell::new(None) };
}

pub fn ensure_dir() {
    let _ = std::fs::create_dir_all(DIR);
}

fn path_of(backend_start_us: i64, pid: i32) -> PathBuf {
    PathBuf::from(DIR).join(format!("{backend_start_us}-{pid}.spool"))
}

fn own_path() -> PathBuf {
    path_of(crate::pgutil::backend_start_unix_us(), unsafe {
        pgrx::pg_sys::MyProcPid
    })
}

/// Before shared memory is left (the ring positions are read under LWLocks).
unsafe extern "C-unwind" fn at_exit(_code: i32, _arg: pgrx::pg_sys::Datum) {
    JOURNAL.with(|j| {
        let Ok(mut j) = j.try_borrow_mut() else {
            return;
        };
        let Some(mut j) = j.take() else { return };
        if stored(&mut j.marks) {
            let _ = std::fs::remove_file(own_path());
        } else {
            let marks: Vec<String> = j.marks.iter().map(|(s, p)| format!("{s}_{p}")).collect();
            let mut to = own_path();
            to.set_extension(format!("{}.exited", marks.join(",")));
            let _ = std::fs::rename(own_path(), to);
        }
    });
}

fn stored(marks: &mut Vec<(usize, u64)>) -> bool {
    marks.retain(|&(slot, pos)| super::queue::tail(slot) < pos);
    marks.is_empty()
}

/// A spooled record went into a ring: it is stored once the slot's tail passes `pos`.
pub fn queued(slot: usize, pos: u64) {
    JOURNAL.with(|cell| {
        if let Ok(mut cell) = cell.try_borrow_mut() {
            if let Some(j) = cell.as_mut() {
                match j.marks.iter_mut().find(|(s, _)| *s == slot) {
                    Some(e) => e.1 = pos,
                    None => j.marks.push((slot, pos)),
                }
            }
        }
    });
}

/// Files of backends that exited before the writers stored all their records: removed
/// once the rings' tails have passed the positions their names give.
pub fn settle_exited() {
    let Ok(rd) = std::fs::read_dir(DIR) else {
        return;
    };
    for e in rd.filter_map(|e| e.ok()) {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(marks) = name
            .strip_suffix(".exited")
            .and_then(|n| n.rsplit_once('.'))
            .map(|(_, m)| m.to_string())
        else {
            continue;
        };
        let passed = marks.split(',').all(|m| {
            let Some((s, p)) = m.split_once('_') else {
                return true;
            };
            match (s.parse::<usize>(), p.parse::<u64>()) {
                (Ok(s), Ok(p)) => s >= super::queue::slot_count() || super::queue::tail(s) >= p,
                _ => true,
            }
        });
        if passed {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

fn with_journal<R>(f: impl FnOnce(&mut Journal) -> std::io::Result<R>) -> Option<R> {
    JOURNAL.with(|cell| {
        let mut cell = cell.try_borrow_mut().ok()?;
        if cell.is_none() {
            let open = || File::create(own_path());
            let file = open()
                .or_else(|_| {
                    ensure_dir();
                    open()
                })
                .ok()?;
            unsafe { pgrx::pg_sys::before_shmem_exit(Some(at_exit), pgrx::pg_sys::Datum::from(0)) };
            *cell = Some(Journal {
                file,
                generation: 0,
                len: 0,
                marks: Vec::new(),
            });
        }
        f(cell.as_mut()?).ok()
    })
}

fn line(generation: u64, json: &str) -> String {
    format!("{generation} {} {json}\n", json.len())
}

/// A migration starts: its start record goes to the journal, which begins anew if the
/// log holds everything it had, or goes on. One write, no truncation.
pub fn begin(dboid: u32, start_json: &str) -> bool {
    with_journal(|j| {
        if j.generation == 0 || stored(&mut j.marks) {
            j.generation += 1;
            let body = format!(
                "{dboid} {}\n{}",
                j.generation,
                line(j.generation, start_json)
            );
            j.file.write_all_at(body.as_bytes(), 0)?;
            j.len = body.len() as u64;
            Ok(())
        } else {
            append_line(j, start_json)
        }
    })
    .is_some()
}

fn append_line(j: &mut Journal, json: &str) -> std::io::Result<()> {
    let l = line(j.generation, json);
    j.file.write_all_at(l.as_bytes(), j.len)?;
    j.len += l.len() as u64;
    Ok(())
}

/// A record of this backend's database, before it is queued (or, for a failing
/// statement, when its error is reported).
pub fn append(dboid: u32, json: &str) -> bool {
    // A standby keeps no spool: its records go to the server log (see `backend`).
    if unsafe { pgrx::pg_sys::RecoveryInProgress() } {
        return false;
    }
    with_journal(|j| {
        if j.generation == 0 {
            j.generation = 1;
            let header = format!("{dboid} 1\n");
            j.file.write_all_at(header.as_bytes(), 0)?;
            j.len = header.len() as u64;
        }
        append_line(j, json)
    })
    .is_some()
}

/// The journal's records (JSON text and record) and database, from its valid lines.
fn parse(text: &str) -> (Option<u32>, Vec<(String, Record)>) {
    let mut lines = text.split_inclusive('\n');
    let Some(header) = lines.next().and_then(|h| h.strip_suffix('\n')) else {
        return (None, vec![]);
    };
    let mut h = header.split(' ');
    let (Some(db), Some(gen)) = (
        h.next().and_then(|d| d.parse::<u32>().ok()),
        h.next().and_then(|g| g.parse::<u64>().ok()),
    ) else {
        return (None, vec![]);
    };
    let mut out = Vec::new();
    for l in lines {
        let Some(l) = l.strip_suffix('\n') else { break };
        let mut parts = l.splitn(3, ' ');
        let (Some(g), Some(n), Some(json)) = (parts.next(), parts.next(), parts.next()) else {
            break;
        };
        if g.parse::<u64>().ok() != Some(gen) || n.parse::<usize>().ok() != Some(json.len()) {
            break;
        }
        match serde_json::from_str::<Record>(json) {
            Ok(r) => out.push((json.to_string(), r)),
            Err(_) => break,
        }
    }
    (Some(db), out)
}

/// The start record of the migration `key` running in backend (start µs, pid), if any.
pub fn read_start(backend_start_us: i64, pid: i32, key: &str) -> Option<MigrationStart> {
    let text = std::fs::read_to_string(path_of(backend_start_us, pid)).ok()?;
    parse(&text).1.into_iter().rev().find_map(|(_, r)| match r {
        Record::MigrationStart(s) if s.migration == key => Some(s),
        _ => None,
    })
}

/// A spool file left by a backend of an earlier server lifetime.
pub struct Stale {
    pub path: PathBuf,
    pub dboid: Option<u32>,
    pub records: Vec<(String, Record)>,
}

/// Files stamped before `since_us` (the last server start or crash restart).
pub fn stale(since_us: i64) -> Vec<Stale> {
    let Ok(rd) = std::fs::read_dir(DIR) else {
        return vec![];
    };
    let mut v: Vec<Stale> = rd
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            if !name.ends_with(".spool") && !name.ends_with(".exited") {
                return None;
            }
            let stamp: i64 = name.split('-').next()?.parse().ok()?;
            if stamp >= since_us {
                return None;
            }
            let text = std::fs::read_to_string(e.path()).unwrap_or_default();
            let (dboid, records) = parse(&text);
            Some(Stale {
                path: e.path(),
                dboid,
                records,
            })
        })
        .collect();
    // Oldest backends first: their records were written first.
    v.sort_by(|a, b| a.path.cmp(&b.path));
    v
}

/// Databases with records in spool files from before `since_us`; files without any
/// (backends that crashed between migrations) are removed on the way.
pub fn stale_databases(since_us: i64) -> Vec<u32> {
    let mut v = Vec::new();
    for s in stale(since_us) {
        match s.dboid {
            Some(d) if !s.records.is_empty() => v.push(d),
            _ => remove(&s.path),
        }
    }
    v.sort_unstable();
    v.dedup();
    v
}

/// Spool files a crash left for a database no writer can store into (dropped): their
/// records go to the server log, the last resort, counted as fallen back.
pub fn drain_stale_to_server_log(dboid: u32, since_us: i64, why: &str) {
    let mut n = 0;
    for s in stale(since_us) {
        if s.dboid == Some(dboid) {
            for (json, _) in &s.records {
                pgrx::log!("pg_migsafe_audit_fallback reason={why} {json}");
            }
            n += s.records.len() as u64;
            remove(&s.path);
        }
    }
    super::queue::count_fallback(n);
}

pub fn remove(path: &PathBuf) {
    let _ = std::fs::remove_file(path);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start(key: &str) -> String {
        format!(
            r#"{{"kind":"migration_start","migration":"{key}","started_at":"2026-01-01T00:00:00.000000+00:00","session":{{"database":"d","session_user":"u","current_user":"u","pid":1}},"first_statement":"x"}}"#
        )
    }

    #[test]
    fn parse_reads_the_current_generation_and_stops_at_leftovers() {
        let (a, b) = (start("1-1"), start("2-1"));
        // Generation 1 held two records; generation 2 rewrote the start with one.
        let old = format!("5 1\n{}{}", line(1, &a), line(1, &b));
        let new = format!("5 2\n{}", line(2, &b));
        let mut text = old.into_bytes();
        text[..new.len()].copy_from_slice(new.as_bytes());
        let (db, recs) = parse(&String::from_utf8(text).unwrap());
        assert_eq!(db, Some(5));
        assert_eq!(recs.len(), 1);
        assert_eq!(recs[0].0, b);
    }

    #[test]
    fn parse_ignores_a_torn_last_line() {
        let a = start("1-1");
        let full = format!("5 1\n{}{}", line(1, &a), line(1, &a));
        let torn = &full[..full.len() - 10];
        assert_eq!(parse(torn).1.len(), 1);
        assert_eq!(parse(&full).1.len(), 2);
        assert_eq!(parse("").1.len(), 0);
        assert_eq!(parse("garbage").0, None);
    }
}
