//! The backlog: records that shared memory could not take, on disk until a writer of
//! their database stores them.
//!
//! A record goes to the backlog instead of a ring when its database has no ring (more
//! databases are recording than `migsafe.audit_databases`) or its ring is full (the
//! writer is held back, or has no process yet). The backend appends it to its own file
//! `pg_migsafe/backlog/<db oid>/<backend start µs>-<pid>` as a line `<length> <json>`,
//! holding the file's `flock` while it writes, and the statement goes on at its normal
//! speed. The server log is the last resort only when the file cannot be written.
//!
//! A writer takes a file by renaming it to `….taken` (backends that append later
//! create a new file), then takes its `flock`, which waits for an append that opened
//! the file before the rename, stores the records and removes the file. A backend that
//! gets the lock checks that its open file still has the backlog name; if the writer
//! took it meanwhile, the backend opens the name again. A `….taken` file found when a
//! writer starts was left by a writer that died: its records are stored unless the
//! log already holds them (`engine::audit::identity`).
//!
//! The launcher looks at the directory every second and sees that every database with
//! a backlog gets a writer (see `worker`).

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

const DIR: &str = "pg_migsafe/backlog";
const TAKEN: &str = ".taken";

fn db_dir(dboid: u32) -> PathBuf {
    PathBuf::from(DIR).join(dboid.to_string())
}

fn same_file(f: &File, path: &Path) -> bool {
    match (f.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
        _ => false,
    }
}

/// Appends a record for the database's writer. Err only when the file cannot be
/// written (then the caller falls back to the server log).
pub fn append(dboid: u32, json: &str) -> std::io::Result<()> {
    let dir = db_dir(dboid);
    let path = dir.join(format!(
        "{}-{}",
        crate::pgutil::backend_start_unix_us(),
        unsafe { pgrx::pg_sys::MyProcPid }
    ));
    let line = format!("{} {json}\n", json.len());
    let mut last = std::io::Error::other("the backlog file was taken three times in a row");
    for _ in 0..3 {
        let open = || OpenOptions::new().append(true).create(true).open(&path);
        let mut f = match open() {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(&dir)?;
                open()?
            }
            Err(e) => return Err(e),
        };
        f.lock()?;
        if !same_file(&f, &path) {
            // A writer took the file between our open and our lock.
            last = std::io::Error::other("the backlog file was taken while it was opened");
            continue;
        }
        f.write_all(line.as_bytes())?;
        return Ok(());
    }
    Err(last)
}

/// A file a writer took, locked until it is `done`.
pub struct Taken {
    path: PathBuf,
    _file: File,
    /// Left by a writer that died: some records may be stored already.
    pub leftover: bool,
    pub records: Vec<String>,
    /// Bytes at the end that are no complete record (a backend killed mid-write).
    pub torn: usize,
}

impl Taken {
    /// Its records are stored: the file goes.
    pub fn done(self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn parse(text: &str) -> (Vec<String>, usize) {
    let mut out = Vec::new();
    let mut used = 0;
    for l in text.split_inclusive('\n') {
        let Some(body) = l.strip_suffix('\n') else {
            break;
        };
        let Some((n, json)) = body.split_once(' ') else {
            break;
        };
        if n.parse::<usize>().ok() != Some(json.len()) {
            break;
        }
        out.push(json.to_string());
        used += l.len();
    }
    (out, text.len() - used)
}

/// Takes the database's backlog files (at most `max_files`), leftovers first.
pub fn take(dboid: u32, max_files: usize) -> Vec<Taken> {
    let dir = db_dir(dboid);
    let Ok(rd) = std::fs::read_dir(&dir) else {
        return vec![];
    };
    let mut names: Vec<String> = rd
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort_by_key(|n| (!n.ends_with(TAKEN), n.clone()));
    let mut out = Vec::new();
    for name in names.into_iter().take(max_files) {
        let leftover = name.ends_with(TAKEN);
        let path = if leftover {
            dir.join(&name)
        } else {
            let to = dir.join(format!("{name}{TAKEN}"));
            if std::fs::rename(dir.join(&name), &to).is_err() {
                continue;
            }
            to
        };
        let Ok(mut f) = File::open(&path) else {
            continue;
        };
        // Waits for an append that opened the file before it was renamed.
        if f.lock().is_err() || !same_file(&f, &path) {
            continue;
        }
        let mut bytes = Vec::new();
        if f.read_to_end(&mut bytes).is_err() {
            continue;
        }
        let text = String::from_utf8_lossy(&bytes);
        let (records, torn) = parse(&text);
        out.push(Taken {
            path,
            _file: f,
            leftover,
            records,
            torn,
        });
    }
    out
}

/// Does the database have a backlog?
pub fn pending(dboid: u32) -> bool {
    std::fs::read_dir(db_dir(dboid))
        .map(|mut rd| rd.next().is_some())
        .unwrap_or(false)
}

/// The databases that have a backlog.
pub fn databases() -> Vec<u32> {
    let Ok(rd) = std::fs::read_dir(DIR) else {
        return vec![];
    };
    let mut v: Vec<u32> = rd
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter(|&d| pending(d))
        .collect();
    v.sort_unstable();
    v
}

/// Everything in the database's backlog goes to the server log (for a database no
/// writer can store into: dropped, or without the extension), counted as fallen back.
pub fn drain_to_server_log(dboid: u32, why: &str) {
    let mut n = 0;
    loop {
        let taken = take(dboid, 64);
        if taken.is_empty() {
            let _ = std::fs::remove_dir(db_dir(dboid));
            super::queue::count_fallback(n);
            return;
        }
        for t in taken {
            for r in &t.records {
                pgrx::log!("pg_migsafe_audit_fallback reason={why} {r}");
            }
            n += t.records.len() as u64;
            t.done();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_keeps_complete_lines_and_measures_a_torn_end() {
        let text = "3 {a}\n5 {bcd}\n7 {ef";
        assert_eq!(
            parse(text),
            (vec!["{a}".to_string(), "{bcd}".to_string()], 5)
        );
        assert_eq!(parse(""), (vec![], 0));
        // A wrong length is no record (and nothing after it counts).
        assert_eq!(parse("4 {a}\n3 {b}\n").0.len(), 0);
    }
}
