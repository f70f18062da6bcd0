//! Shared memory of the audit log: one ring buffer of queued records per database
//! (`migsafe.audit_databases` of them, `migsafe.audit_queue_size` split evenly), the
//! table of running migrations the writers watch for alerts, and the counters the
//! `migsafe.metrics` view shows.
//!
//! A backend appends a record (`[u32 length][JSON]`) to its database's ring under the
//! ring's LWLock and sets the writer's latch. The writer copies records out, stores
//! them in its own transaction, and only then advances the ring's tail: a writer that
//! dies mid-batch leaves the records queued for the next one. When a database has no
//! ring, or its ring stays full for `migsafe.audit_queue_wait` (default: not at all),
//! the backend puts the record in the backlog on disk (`backlog`, counted in
//! `spilled`); only a record that cannot be written there goes to the server log
//! (counted in `fallback`) — never silently.
//!
//! Writers are shared fairly: a slot is a database's ring and, while it runs, its
//! writer's process. When databases wait (records queued or in the backlog, and no
//! writer, because there is no free slot or no free worker process), the launcher asks
//! writers that have run for `WRITER_QUANTUM_US` to yield: such a writer stores what is
//! queued, exits, and hands its slot to a waiting database that had none.

use crate::guc;
use pgrx::pg_sys;
use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, Ordering};

pub const MAX_RUNNING: usize = 1024;
pub const KEY_LEN: usize = 48;

/// Slot states.
pub const IDLE: u32 = 0;
pub const STARTING: u32 = 1;
pub const RUNNING: u32 = 2;

#[repr(C)]
pub struct Header {
    pub nslots: u32,
    pub ring_size: u32,
    /// Guards slot assignment and the running-migrations table.
    pub lock: *mut pg_sys::LWLock,
    pub launcher_latch: *mut pg_sys::Latch,
    /// Records queued / written to a log table / written to the server log instead.
    pub queued: AtomicU64,
    pub written: AtomicU64,
    pub fallback: AtomicU64,
    /// Records put in the backlog on disk (no ring, or a full one).
    pub spilled: AtomicU64,
    /// Bumped at the commit of any change to migsafe.phase_event (phase caches).
    pub phase_generation: AtomicU64,
    /// Unix µs of the last migration end and its duration, for the metrics view.
    pub last_migration_end_us: AtomicI64,
    pub last_migration_duration_us: AtomicI64,
    /// Unix µs when this shared memory was set up (server start or crash restart):
    /// spool files of migrations started before it were left by a crash.
    pub initialized_us: i64,
}

#[repr(C)]
pub struct Slot {
    pub lock: *mut pg_sys::LWLock,
    pub dboid: AtomicU32,
    pub state: AtomicU32,
    pub exit_requested: AtomicU32,
    pub worker_pid: i32,
    pub latch: *mut pg_sys::Latch,
    /// Monotonic byte positions: `head - tail` bytes are queued.
    pub head: u64,
    pub tail: u64,
    pub pending: u64,
    pub start_requested_us: i64,
    /// Writers started since one last connected (a database that cannot be connected
    /// to, say dropped, would otherwise be retried forever).
    pub attempts: u32,
    /// The launcher asks the writer to store what is queued and exit (others wait).
    pub yield_requested: AtomicU32,
    /// A database without a slot that gets this one when its writer yields.
    pub reserved_for: u32,
    /// Unix µs when the running writer attached (how long it has had its process).
    pub served_since_us: i64,
    /// Unix µs since when the slot's database waits for a writer (0: it does not).
    pub waiting_since_us: i64,
}

/// How long a writer keeps its process while other databases wait for one.
pub const WRITER_QUANTUM_US: i64 = 2_000_000;

#[repr(C)]
pub struct Running {
    /// The backend that owns the entry (0: free).
    pub pid: i32,
    pub dboid: u32,
    /// A migration is running now.
    pub active: u32,
    /// Its start record is taken care of (stored by a writer, or carried by the end).
    pub start_claimed: u32,
    pub started_us: i64,
    /// Names the backend's spool file (with the pid).
    pub backend_start_us: i64,
    /// 0 none, 1 warning sent, 2 critical sent.
    pub alerted: u32,
    pub key_len: u32,
    pub key: [u8; KEY_LEN],
}

static mut SHARED: *mut Header = std::ptr::null_mut();
static mut PREV_SHMEM_STARTUP: pg_sys::shmem_startup_hook_type = None;
#[cfg(not(any(feature = "pg13", feature = "pg14")))]
static mut PREV_SHMEM_REQUEST: pg_sys::shmem_request_hook_type = None;

const TRANCHE: &std::ffi::CStr = c"pg_migsafe";
const SHMEM_NAME: &std::ffi::CStr = c"pg_migsafe audit queue";

fn nslots() -> usize {
    guc::AUDIT_DATABASES.get().max(1) as usize
}

fn ring_size() -> usize {
    // audit_queue_size is in kB; each database gets an equal share, 8-byte aligned.
    let total = guc::AUDIT_QUEUE_SIZE.get().max(256) as usize * 1024;
    (total / nslots()) & !7
}

fn layout() -> (usize, usize, usize, usize) {
    let h = std::mem::size_of::<Header>().next_multiple_of(64);
    let slots = (std::mem::size_of::<Slot>() * nslots()).next_multiple_of(64);
    let running = (std::mem::size_of::<Running>() * MAX_RUNNING).next_multiple_of(64);
    let total = h + slots + running + COUNTERS_BYTES + ring_size() * nslots();
    (h, h + slots, h + slots + running, total)
}

/// Snapshot-id counters: one per database that takes snapshots in this server lifetime.
pub const MAX_ID_COUNTERS: usize = 8192;

#[repr(C)]
struct IdCounter {
    dboid: u32,
    next: i64,
}

const COUNTERS_BYTES: usize =
    (std::mem::size_of::<IdCounter>() * MAX_ID_COUNTERS).next_multiple_of(64);

unsafe fn request() {
    let (_, _, _, total) = layout();
    pg_sys::RequestAddinShmemSpace(total);
    pg_sys::RequestNamedLWLockTranche(TRANCHE.as_ptr(), nslots() as i32 + 1);
}

#[cfg(not(any(feature = "pg13", feature = "pg14")))]
#[pgrx::pg_guard]
unsafe extern "C-unwind" fn shmem_request() {
    if let Some(prev) = PREV_SHMEM_REQUEST {
        prev();
    }
    request();
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn shmem_startup() {
    if let Some(prev) = PREV_SHMEM_STARTUP {
        prev();
    }
    // layout(): (slots offset, running offset, rings offset, total size)
    let (slots_off, _, _, total) = layout();
    // AddinShmemInitLock (a macro in C: MainLWLockArray[21]).
    let init_lock = &raw mut (*pg_sys::MainLWLockArray.add(21)).lock;
    pg_sys::LWLockAcquire(init_lock, pg_sys::LWLockMode::LW_EXCLUSIVE);
    let mut found = false;
    let base = pg_sys::ShmemInitStruct(SHMEM_NAME.as_ptr(), total, &mut found) as *mut u8;
    if !found {
        std::ptr::write_bytes(base, 0, total);
        let locks = pg_sys::GetNamedLWLockTranche(TRANCHE.as_ptr());
        let h = base as *mut Header;
        (*h).nslots = nslots() as u32;
        (*h).ring_size = ring_size() as u32;
        (*h).lock = &raw mut (*locks).lock;
        (*h).initialized_us = crate::pgutil::now_unix_us();
        for i in 0..nslots() {
            let s = (base.add(slots_off) as *mut Slot).add(i);
            (*s).lock = &raw mut (*locks.add(i + 1)).lock;
        }
    }
    SHARED = base as *mut Header;
    pg_sys::LWLockRelease(init_lock);
}

pub fn init() {
    unsafe {
        #[cfg(not(any(feature = "pg13", feature = "pg14")))]
        {
            PREV_SHMEM_REQUEST = pg_sys::shmem_request_hook;
            pg_sys::shmem_request_hook = Some(shmem_request);
        }
        #[cfg(any(feature = "pg13", feature = "pg14"))]
        request();
        PREV_SHMEM_STARTUP = pg_sys::shmem_startup_hook;
        pg_sys::shmem_startup_hook = Some(shmem_startup);
    }
}

/// The launcher's latch, which backends set when they spill records to the backlog.
pub fn set_launcher_latch(latch: *mut pg_sys::Latch) {
    unsafe {
        if !SHARED.is_null() {
            (*SHARED).launcher_latch = latch;
        }
    }
}

pub fn header() -> Option<&'static Header> {
    unsafe { SHARED.as_ref() }
}

unsafe fn slot_ptr(i: usize) -> *mut Slot {
    let (_, slots_off, _, _) = layout_of_shared();
    ((SHARED as *mut u8).add(slots_off) as *mut Slot).add(i)
}

unsafe fn running_ptr(i: usize) -> *mut Running {
    let (_, _, running_off, _) = layout_of_shared();
    ((SHARED as *mut u8).add(running_off) as *mut Running).add(i)
}

unsafe fn ring_ptr(i: usize) -> *mut u8 {
    let (_, _, _, rings_off) = layout_of_shared();
    (SHARED as *mut u8).add(rings_off + i * (*SHARED).ring_size as usize)
}

unsafe fn counter_ptr(i: usize) -> *mut IdCounter {
    let (_, _, _, rings_off) = layout_of_shared();
    ((SHARED as *mut u8).add(rings_off - COUNTERS_BYTES) as *mut IdCounter).add(i)
}

/// Offsets from the values stored in shared memory (the GUCs are PGC_POSTMASTER, but
/// reading the header makes every process agree even so).
unsafe fn layout_of_shared() -> (usize, usize, usize, usize) {
    let n = (*SHARED).nslots as usize;
    let h = std::mem::size_of::<Header>().next_multiple_of(64);
    let slots = (std::mem::size_of::<Slot>() * n).next_multiple_of(64);
    let running = (std::mem::size_of::<Running>() * MAX_RUNNING).next_multiple_of(64);
    (0, h, h + slots, h + slots + running + COUNTERS_BYTES)
}

struct Guard(*mut pg_sys::LWLock);
impl Guard {
    unsafe fn exclusive(l: *mut pg_sys::LWLock) -> Guard {
        pg_sys::LWLockAcquire(l, pg_sys::LWLockMode::LW_EXCLUSIVE);
        Guard(l)
    }
    unsafe fn shared(l: *mut pg_sys::LWLock) -> Guard {
        pg_sys::LWLockAcquire(l, pg_sys::LWLockMode::LW_SHARED);
        Guard(l)
    }
}
impl Drop for Guard {
    fn drop(&mut self) {
        // LWLocks are also released by LWLockReleaseAll when an error unwinds.
        unsafe {
            if pg_sys::LWLockHeldByMe(self.0) {
                pg_sys::LWLockRelease(self.0)
            }
        }
    }
}

pub fn slot_count() -> usize {
    header().map(|h| h.nslots as usize).unwrap_or(0)
}

pub fn slot(i: usize) -> &'static mut Slot {
    unsafe { &mut *slot_ptr(i) }
}

/// The slot of a database, claiming a free one if it has none.
pub fn slot_for(dboid: pg_sys::Oid, claim: bool) -> Option<usize> {
    let h = header()?;
    let want = u32::from(dboid);
    let find = || (0..h.nslots as usize).find(|&i| slot(i).dboid.load(Ordering::Acquire) == want);
    unsafe {
        {
            let _g = Guard::shared(h.lock);
            if let Some(i) = find() {
                return Some(i);
            }
        }
        if !claim {
            return None;
        }
        let _g = Guard::exclusive(h.lock);
        if let Some(i) = find() {
            return Some(i);
        }
        let free = (0..h.nslots as usize).find(|&i| slot(i).dboid.load(Ordering::Acquire) == 0)?;
        let s = slot(free);
        let _sg = Guard::exclusive(s.lock);
        s.dboid.store(want, Ordering::Release);
        s.exit_requested.store(0, Ordering::Release);
        Some(free)
    }
}

/// The next snapshot id of a database, from its counter in shared memory: ids come
/// from here, not from a sequence, so that taking a snapshot inside a user's
/// transaction changes neither `lastval()` nor the locks it holds. The first use in a
/// server lifetime starts the counter after `largest_stored()` (taken without the
/// lock held); no id handed out in this lifetime can be missing from it then, as ids
/// are only ever handed out here. A dropped database keeps its counter (a new one that
/// gets its oid starts past it: larger ids, never a taken one). None when shared memory
/// is missing or the table of counters is full (more than `MAX_ID_COUNTERS` databases
/// took snapshots in this server lifetime).
pub fn next_snapshot_id(dboid: pg_sys::Oid, largest_stored: impl FnOnce() -> i64) -> Option<i64> {
    let h = header()?;
    let want = u32::from(dboid);
    let take = || -> Option<i64> {
        let _g = unsafe { Guard::exclusive(h.lock) };
        (0..MAX_ID_COUNTERS).find_map(|i| unsafe {
            let c = &mut *counter_ptr(i);
            (c.dboid == want).then(|| {
                c.next += 1;
                c.next - 1
            })
        })
    };
    if let Some(id) = take() {
        return Some(id);
    }
    let start = largest_stored().max(0) + 1;
    let _g = unsafe { Guard::exclusive(h.lock) };
    unsafe {
        if let Some(c) = (0..MAX_ID_COUNTERS)
            .map(|i| &mut *counter_ptr(i))
            .find(|c| c.dboid == want)
        {
            // Another backend started it meanwhile.
            c.next += 1;
            return Some(c.next - 1);
        }
        let c = (0..MAX_ID_COUNTERS)
            .map(|i| &mut *counter_ptr(i))
            .find(|c| c.dboid == 0)?;
        c.dboid = want;
        c.next = start + 1;
        Some(start)
    }
}

/// An id was found taken when its snapshot was stored (data restored meanwhile): the
/// counter goes past the id used instead.
pub fn snapshot_id_used(dboid: pg_sys::Oid, id: i64) {
    let Some(h) = header() else { return };
    let _g = unsafe { Guard::exclusive(h.lock) };
    for i in 0..MAX_ID_COUNTERS {
        let c = unsafe { &mut *counter_ptr(i) };
        if c.dboid == u32::from(dboid) && c.next <= id {
            c.next = id + 1;
        }
    }
}

/// Why a record could not be queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotQueued {
    /// Shared memory is not there (not preloaded) — cannot happen in a running server.
    NoSharedMemory,
    /// All `migsafe.audit_databases` slots belong to other databases.
    NoSlot,
    /// The ring stayed full for `migsafe.audit_queue_wait`.
    Full,
}

/// Queue one record for the database's writer, waiting up to `migsafe.audit_queue_wait`
/// for room. Never raises an error (it runs in commit callbacks too). Returns the slot
/// and the ring position after the record: it has left the ring once the slot's `tail`
/// reaches it.
pub fn enqueue(dboid: pg_sys::Oid, record: &[u8]) -> Result<(usize, u64), NotQueued> {
    let h = header().ok_or(NotQueued::NoSharedMemory)?;
    let i = slot_for(dboid, true).ok_or(NotQueued::NoSlot)?;
    let need = record.len() as u64 + 4;
    if need > h.ring_size as u64 {
        return Err(NotQueued::Full);
    }
    let wait_ms = guc::AUDIT_QUEUE_WAIT.get().max(0) as u64;
    let mut waited_us = 0u64;
    loop {
        let s = slot(i);
        let (queued, latch, state) = unsafe {
            let _g = Guard::exclusive(s.lock);
            if s.dboid.load(Ordering::Acquire) != u32::from(dboid) {
                // The slot was given up meanwhile: claim again.
                drop(_g);
                return enqueue(dboid, record);
            }
            let free = h.ring_size as u64 - (s.head - s.tail);
            if free >= need {
                let ring = ring_ptr(i);
                write_ring(
                    ring,
                    h.ring_size as u64,
                    s.head,
                    &(record.len() as u32).to_le_bytes(),
                );
                write_ring(ring, h.ring_size as u64, s.head + 4, record);
                s.head += need;
                s.pending += 1;
                (Some(s.head), s.latch, s.state.load(Ordering::Acquire))
            } else {
                (None, s.latch, s.state.load(Ordering::Acquire))
            }
        };
        if let Some(pos) = queued {
            h.queued.fetch_add(1, Ordering::Relaxed);
            if state == RUNNING && !latch.is_null() {
                unsafe { pg_sys::SetLatch(latch) };
            } else if state == IDLE {
                crate::audit::worker::start_writer(i, dboid);
            }
            return Ok((i, pos));
        }
        if state == IDLE {
            crate::audit::worker::start_writer(i, dboid);
        } else if !latch.is_null() {
            unsafe { pg_sys::SetLatch(latch) };
        }
        if waited_us >= wait_ms * 1000 {
            return Err(NotQueued::Full);
        }
        unsafe { pg_sys::pg_usleep(1000) };
        waited_us += 1000;
    }
}

unsafe fn write_ring(ring: *mut u8, size: u64, pos: u64, bytes: &[u8]) {
    let start = (pos % size) as usize;
    let first = bytes.len().min(size as usize - start);
    std::ptr::copy_nonoverlapping(bytes.as_ptr(), ring.add(start), first);
    if first < bytes.len() {
        std::ptr::copy_nonoverlapping(bytes.as_ptr().add(first), ring, bytes.len() - first);
    }
}

unsafe fn read_ring(ring: *const u8, size: u64, pos: u64, out: &mut [u8]) {
    let start = (pos % size) as usize;
    let first = out.len().min(size as usize - start);
    std::ptr::copy_nonoverlapping(ring.add(start), out.as_mut_ptr(), first);
    if first < out.len() {
        std::ptr::copy_nonoverlapping(ring, out.as_mut_ptr().add(first), out.len() - first);
    }
}

/// A batch copied out of a ring; `commit` it once stored.
pub struct Batch {
    pub slot: usize,
    pub records: Vec<Vec<u8>>,
    bytes: u64,
}

/// Copies up to `max` queued records of slot `i` without removing them.
pub fn peek(i: usize, max: usize) -> Batch {
    let h = header().expect("shared memory");
    let s = slot(i);
    let (tail, head) = unsafe {
        let _g = Guard::shared(s.lock);
        (s.tail, s.head)
    };
    // Only this writer advances the tail and backends only write past the head, so
    // [tail, head) stays as it is while we copy it without the lock.
    let ring = unsafe { ring_ptr(i) };
    let mut pos = tail;
    let mut records = Vec::new();
    while pos < head && records.len() < max {
        let mut len = [0u8; 4];
        unsafe { read_ring(ring, h.ring_size as u64, pos, &mut len) };
        let len = u32::from_le_bytes(len) as usize;
        let mut rec = vec![0u8; len];
        unsafe { read_ring(ring, h.ring_size as u64, pos + 4, &mut rec) };
        records.push(rec);
        pos += 4 + len as u64;
    }
    Batch {
        slot: i,
        records,
        bytes: pos - tail,
    }
}

impl Batch {
    /// The records are stored: remove them from the ring.
    pub fn commit(self) {
        let h = header().expect("shared memory");
        self.remove();
        h.written
            .fetch_add(self.records.len() as u64, Ordering::Relaxed);
    }

    /// The records cannot be stored: they go to the server log, counted as fallen back,
    /// and leave the ring.
    pub fn send_to_server_log(self, why: &str) {
        let h = header().expect("shared memory");
        for r in &self.records {
            pgrx::log!(
                "pg_migsafe_audit_fallback reason={why} {}",
                String::from_utf8_lossy(r)
            );
        }
        self.remove();
        h.fallback
            .fetch_add(self.records.len() as u64, Ordering::Relaxed);
    }

    fn remove(&self) {
        let s = slot(self.slot);
        unsafe {
            let _g = Guard::exclusive(s.lock);
            s.tail += self.bytes;
            s.pending -= self.records.len() as u64;
        }
    }
}

/// Records that went to the server log instead of the table (`migsafe_dropped_total`).
pub fn count_fallback(n: u64) {
    if let Some(h) = header() {
        h.fallback.fetch_add(n, Ordering::Relaxed);
    }
}

/// Everything queued in slot `i` goes to the server log (see `Batch::send_to_server_log`).
pub fn drain_to_server_log(i: usize, why: &str) {
    loop {
        let batch = peek(i, 2000);
        if batch.records.is_empty() {
            return;
        }
        batch.send_to_server_log(why);
    }
}

/// How far the writer of slot `i` has taken records out of its ring.
pub fn tail(i: usize) -> u64 {
    let s = slot(i);
    unsafe {
        let _g = Guard::shared(s.lock);
        s.tail
    }
}

/// Queued records and bytes of one slot.
pub fn depth(i: usize) -> (u64, u64) {
    let s = slot(i);
    unsafe {
        let _g = Guard::shared(s.lock);
        (s.pending, s.head - s.tail)
    }
}

/// Called by a writer: takes the slot as RUNNING with its pid and latch.
pub fn writer_attach(i: usize) {
    let s = slot(i);
    unsafe {
        let _g = Guard::exclusive(s.lock);
        s.worker_pid = pg_sys::MyProcPid;
        s.latch = pg_sys::MyLatch;
        s.served_since_us = crate::pgutil::now_unix_us();
        s.waiting_since_us = 0;
        s.state.store(RUNNING, Ordering::Release);
    }
}

/// Called by a writer that wants to exit: succeeds (and gives the slot up if nothing
/// is queued and no migration of the database is running) unless records arrived.
/// A writer asked to yield exits even with migrations running or records queued (they
/// wait for its next turn), and hands an empty slot to the database reserved for it.
pub fn writer_try_detach(i: usize, dboid: pg_sys::Oid) -> bool {
    let h = header().expect("shared memory");
    unsafe {
        let _hg = Guard::exclusive(h.lock);
        let s = slot(i);
        let _g = Guard::exclusive(s.lock);
        let yielding = s.yield_requested.load(Ordering::Acquire) != 0;
        let empty = s.head == s.tail;
        if !empty && !yielding {
            return false;
        }
        let busy = running_in(dboid);
        if busy && s.exit_requested.load(Ordering::Acquire) == 0 && !yielding {
            return false;
        }
        s.state.store(IDLE, Ordering::Release);
        s.worker_pid = 0;
        s.latch = std::ptr::null_mut();
        s.yield_requested.store(0, Ordering::Release);
        let heir = std::mem::take(&mut s.reserved_for);
        if empty && heir != 0 {
            s.dboid.store(heir, Ordering::Release);
            s.exit_requested.store(0, Ordering::Release);
            s.attempts = 0;
        } else if empty && !busy {
            s.dboid.store(0, Ordering::Release);
        }
        true
    }
}

/// Asks the writer of slot `i` to yield (and, for a database without a slot, to
/// hand the slot on). False if it is not running or already asked.
pub fn request_yield(i: usize, heir: u32) -> bool {
    let s = slot(i);
    let latch = unsafe {
        let _g = Guard::exclusive(s.lock);
        if s.state.load(Ordering::Acquire) != RUNNING
            || s.yield_requested.load(Ordering::Acquire) != 0
        {
            return false;
        }
        s.yield_requested.store(1, Ordering::Release);
        s.reserved_for = heir;
        s.latch
    };
    if !latch.is_null() {
        unsafe { pg_sys::SetLatch(latch) };
    }
    true
}

/// The launcher marks when a slot's database began to wait for a writer; returns it.
pub fn waiting_since(i: usize, now_us: i64) -> i64 {
    let s = slot(i);
    unsafe {
        let _g = Guard::exclusive(s.lock);
        if s.waiting_since_us == 0 {
            s.waiting_since_us = now_us;
        }
        s.waiting_since_us
    }
}

/// Has the launcher asked this writer to yield?
pub fn yield_requested(i: usize) -> bool {
    slot(i).yield_requested.load(Ordering::Acquire) != 0
}

/// Exit callback of a writer (any exit, including an ERROR): the slot is IDLE again.
pub fn writer_gone(i: usize) {
    if header().is_none() || i >= slot_count() {
        return;
    }
    let s = slot(i);
    unsafe {
        let _g = Guard::exclusive(s.lock);
        if s.worker_pid == pg_sys::MyProcPid {
            s.state.store(IDLE, Ordering::Release);
            s.worker_pid = 0;
            s.latch = std::ptr::null_mut();
            s.yield_requested.store(0, Ordering::Release);
            s.reserved_for = 0;
        }
    }
}

/// Asks the writer of a database to finish what is queued and exit (before DROP
/// DATABASE and other commands that need the database free of sessions).
pub fn request_exit(dboid: pg_sys::Oid) {
    if let Some(i) = slot_for(dboid, false) {
        let s = slot(i);
        s.exit_requested.store(1, Ordering::Release);
        let latch = unsafe {
            let _g = Guard::shared(s.lock);
            s.latch
        };
        if !latch.is_null() {
            unsafe { pg_sys::SetLatch(latch) };
        }
    }
}

/// The writer is connected to its database and can store records.
pub fn writer_connected(i: usize) {
    let s = slot(i);
    unsafe {
        let _g = Guard::exclusive(s.lock);
        s.attempts = 0;
    }
}

/// Writes everything queued in slot `i` to the server log and frees the slot (for a
/// database no writer can connect to).
pub fn abandon(i: usize, why: &str) {
    drain_to_server_log(i, why);
    let db = slot(i).dboid.load(Ordering::Acquire);
    if db != 0 {
        crate::audit::backlog::drain_to_server_log(db, why);
    }
    let s = slot(i);
    unsafe {
        let _g = Guard::exclusive(s.lock);
        if s.head == s.tail && s.state.load(Ordering::Acquire) == IDLE {
            s.dboid.store(0, Ordering::Release);
            s.attempts = 0;
        }
    }
}

/// Marks a slot as having a writer starting; false if one is already there.
pub fn claim_start(i: usize, now_us: i64) -> bool {
    let s = slot(i);
    unsafe {
        let _g = Guard::exclusive(s.lock);
        let st = s.state.load(Ordering::Acquire);
        // A writer that never came up within 10 s is presumed lost.
        if st == RUNNING || (st == STARTING && now_us - s.start_requested_us < 10_000_000) {
            return false;
        }
        s.state.store(STARTING, Ordering::Release);
        s.start_requested_us = now_us;
        s.attempts += 1;
        true
    }
}

/// No worker process was free: the start did not happen (and does not count as an
/// attempt to connect).
pub fn start_failed(i: usize) {
    let s = slot(i);
    unsafe {
        let _g = Guard::exclusive(s.lock);
        if s.state.load(Ordering::Acquire) == STARTING {
            s.state.store(IDLE, Ordering::Release);
            s.attempts = s.attempts.saturating_sub(1);
        }
    }
}

// ------------------------------------------------------------ running migrations
//
// A backend claims one entry the first time it records a migration and keeps it until
// it exits (no search per migration); `active` says whether a migration runs now.

thread_local! {
    static OWN_ENTRY: std::cell::Cell<Option<usize>> = const { std::cell::Cell::new(None) };
}

unsafe fn running_in(dboid: pg_sys::Oid) -> bool {
    (0..MAX_RUNNING).any(|i| {
        let r = &*running_ptr(i);
        r.pid != 0 && r.active != 0 && r.dboid == u32::from(dboid)
    })
}

unsafe extern "C-unwind" fn release_entry(_code: i32, _arg: pg_sys::Datum) {
    if let (Some(h), Some(i)) = (header(), OWN_ENTRY.get()) {
        let _g = Guard::exclusive(h.lock);
        let r = &mut *running_ptr(i);
        if r.pid == pg_sys::MyProcPid {
            r.pid = 0;
            r.active = 0;
        }
    }
}

/// Registers the running migration of this backend; None if the table is full (no
/// alerts for it then).
pub fn running_add(dboid: pg_sys::Oid, key: &str, started_us: i64) -> Option<usize> {
    let h = header()?;
    unsafe {
        let _g = Guard::exclusive(h.lock);
        let own = OWN_ENTRY
            .get()
            .filter(|&i| (*running_ptr(i)).pid == pg_sys::MyProcPid);
        let i = match own {
            Some(i) => i,
            None => {
                let i = (0..MAX_RUNNING).find(|&i| (*running_ptr(i)).pid == 0)?;
                if OWN_ENTRY.get().is_none() {
                    // Before shared memory is detached: LWLocks need the PGPROC.
                    pg_sys::before_shmem_exit(Some(release_entry), pg_sys::Datum::from(0));
                }
                OWN_ENTRY.set(Some(i));
                i
            }
        };
        let r = &mut *running_ptr(i);
        r.pid = pg_sys::MyProcPid;
        r.dboid = u32::from(dboid);
        r.started_us = started_us;
        r.backend_start_us = crate::pgutil::backend_start_unix_us();
        r.alerted = 0;
        r.start_claimed = 0;
        let k = key.as_bytes();
        let n = k.len().min(KEY_LEN);
        r.key[..n].copy_from_slice(&k[..n]);
        r.key_len = n as u32;
        r.active = 1;
        Some(i)
    }
}

/// The migration ended. Returns whether a writer stored its start record meanwhile.
pub fn running_remove(i: usize) -> bool {
    let Some(h) = header() else { return false };
    unsafe {
        let _g = Guard::exclusive(h.lock);
        let r = &mut *running_ptr(i);
        if r.pid != pg_sys::MyProcPid {
            return false;
        }
        r.active = 0;
        let claimed = r.start_claimed != 0;
        r.start_claimed = 1;
        claimed
    }
}

/// A copy of a running migration's entry.
#[derive(Debug, Clone)]
pub struct RunningInfo {
    pub index: usize,
    pub pid: i32,
    pub started_us: i64,
    pub backend_start_us: i64,
    pub alerted: u32,
    pub start_claimed: bool,
    pub key: String,
}

pub fn running_list(dboid: Option<pg_sys::Oid>) -> Vec<RunningInfo> {
    let Some(h) = header() else { return vec![] };
    unsafe {
        let _g = Guard::shared(h.lock);
        (0..MAX_RUNNING)
            .filter_map(|i| {
                let r = &*running_ptr(i);
                (r.pid != 0 && r.active != 0 && dboid.is_none_or(|d| r.dboid == u32::from(d))).then(
                    || RunningInfo {
                        index: i,
                        pid: r.pid,
                        started_us: r.started_us,
                        backend_start_us: r.backend_start_us,
                        alerted: r.alerted,
                        start_claimed: r.start_claimed != 0,
                        key: String::from_utf8_lossy(&r.key[..r.key_len as usize]).into_owned(),
                    },
                )
            })
            .collect()
    }
}

/// The entry still describes the same running migration?
unsafe fn same(r: &Running, info: &RunningInfo) -> bool {
    r.pid == info.pid && r.active != 0 && r.started_us == info.started_us
}

/// Records that an alert level was sent, unless the entry changed hands meanwhile.
pub fn running_mark_alerted(info: &RunningInfo, level: u32) {
    if let Some(h) = header() {
        unsafe {
            let _g = Guard::exclusive(h.lock);
            let r = &mut *running_ptr(info.index);
            if same(r, info) {
                r.alerted = r.alerted.max(level);
            }
        }
    }
}

/// A writer takes on storing the start record of a long-running migration: true once,
/// and only while the migration still runs (a migration that ended carries its start
/// in its end record).
pub fn running_claim_start(info: &RunningInfo) -> bool {
    let Some(h) = header() else { return false };
    unsafe {
        let _g = Guard::exclusive(h.lock);
        let r = &mut *running_ptr(info.index);
        if same(r, info) && r.start_claimed == 0 {
            r.start_claimed = 1;
            return true;
        }
        false
    }
}

/// Entries of backends that are gone (they exit through release_entry, so this only
/// matters if one did not): cleared so that writers can give their slots up.
pub fn running_clear_dead() {
    let Some(h) = header() else { return };
    unsafe {
        let _g = Guard::exclusive(h.lock);
        for i in 0..MAX_RUNNING {
            let r = &mut *running_ptr(i);
            if r.pid != 0 && libc_kill0(r.pid) {
                r.pid = 0;
                r.active = 0;
            }
        }
    }
}

/// True when no process with this pid exists.
fn libc_kill0(pid: i32) -> bool {
    !std::path::Path::new(&format!("/proc/{pid}")).exists()
}
