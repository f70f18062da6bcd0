//! In-server lock retries: when DDL that pg_migsafe put under `migsafe.lock_timeout`
//! cannot get its table lock, the backend lets go, waits with exponential backoff and
//! jitter, and tries again until the transaction's `migsafe.lock_retry_budget` is
//! spent. This module decides the waits and words the final error; the backend
//! (`audit::backend::lock_safety`) takes the locks and sleeps.

use crate::audit::{describe_blocker, Blocker};
use crate::policy::Report;
use serde::{Deserialize, Serialize};

/// The first pause after a failed attempt; each later one doubles, up to `BACKOFF_CAP_US`.
pub const BACKOFF_BASE_US: i64 = 100_000;
pub const BACKOFF_CAP_US: i64 = 5_000_000;
/// Attempts kept in full in a statement's audit record (the count is always exact).
pub const ATTEMPTS_RECORDED: usize = 50;

/// One try to take the lock.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    /// How long it waited in the lock queue.
    pub waited_us: i64,
    /// Whether it got the lock.
    pub acquired: bool,
    /// The lock it timed out on ("AccessExclusiveLock on table public.t").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waited_for: Option<String>,
    /// The sessions holding a conflicting lock on what it waited for, when it timed out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blockers: Vec<Blocker>,
    /// Blocking sessions idle in transaction that pg_migsafe ended after this attempt,
    /// before the next (`migsafe.cancel_blockers_after`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ended: Vec<i32>,
    /// The pause after it, when it failed and another attempt followed.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub slept_us: i64,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

/// splitmix64: a well-mixed 64-bit value from any seed (the jitter's source).
pub fn mix(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The pause after failed attempt `n` (1-based): half of `base · 2^(n-1)` (capped at
/// `BACKOFF_CAP_US`) plus a random part of the other half ("equal jitter": sessions
/// retrying together spread out, and no pause is shorter than half its step), never
/// more than what is left of the budget.
pub fn backoff_us(n: u32, random: u64, remaining_us: i64) -> i64 {
    let step = BACKOFF_BASE_US
        .saturating_mul(1i64 << n.saturating_sub(1).min(20))
        .min(BACKOFF_CAP_US);
    let half = step / 2;
    let pause = half + (random % (half as u64 + 1)) as i64;
    pause.min(remaining_us.max(0))
}

/// The shortest try worth a pause: a pause never eats the time of the try after it.
pub const MIN_TRY_US: i64 = 100_000;

/// The pause after failed attempt `n` when another try is to follow: `backoff_us` cut
/// so that at least `MIN_TRY_US` (or one `lock_timeout`, if shorter) of the budget is
/// left for that try; None when there is no room for one (give up now, without a
/// pause that would only hold the transaction's locks longer).
pub fn next_pause_us(n: u32, random: u64, remaining_us: i64, lock_timeout_ms: i32) -> Option<i64> {
    let min_try = MIN_TRY_US.min(lock_timeout_ms as i64 * 1000).max(1000);
    let room = remaining_us - min_try;
    (room >= 0).then(|| backoff_us(n, random, room))
}

/// The lock_timeout of the next attempt: `migsafe.lock_timeout`, cut to what is left of
/// the budget; None when less than a millisecond is left.
pub fn attempt_timeout_ms(lock_timeout_ms: i32, remaining_us: i64) -> Option<i32> {
    let left_ms = remaining_us / 1000;
    (left_ms >= 1).then(|| (lock_timeout_ms as i64).min(left_ms) as i32)
}

fn ms(us: i64) -> String {
    if us >= 10_000_000 {
        format!("{:.0} s", us as f64 / 1e6)
    } else if us >= 1_000_000 {
        format!("{:.1} s", us as f64 / 1e6)
    } else {
        format!("{} ms", us / 1000)
    }
}

fn who(blockers: &[Blocker]) -> String {
    if blockers.is_empty() {
        return "by sessions that had moved on when pg_migsafe looked".into();
    }
    let each: Vec<String> = blockers.iter().map(|b| describe_blocker(b, 120)).collect();
    format!("by {}", each.join("; "))
}

/// The error when the budget ran out: every attempt, how long it waited and who
/// blocked it.
pub fn exhausted_report(
    attempts: &[Attempt],
    total_attempts: usize,
    waited_us: i64,
    budget_ms: i32,
    spent_before_us: i64,
    lock_timeout_ms: i32,
) -> Report {
    let waited = waited_us;
    let last = attempts
        .iter()
        .rev()
        .find_map(|a| a.waited_for.as_deref())
        .unwrap_or("its table lock");
    let message = format!(
        "pg_migsafe: gave up waiting for {last} after {total_attempts} attempt{} in {} (migsafe.lock_retry_budget = {budget_ms}ms is spent)",
        if total_attempts == 1 { "" } else { "s" },
        ms(waited)
    );
    let mut detail = Vec::new();
    for (i, a) in attempts.iter().enumerate() {
        // The lock it waited for, when not the one the message names.
        let what = match a.waited_for.as_deref() {
            Some(w) if w != last => format!(" for {w}"),
            _ => String::new(),
        };
        let mut s = format!(
            "Attempt {} waited {}{what}, blocked {}",
            i + 1,
            ms(a.waited_us),
            who(&a.blockers)
        );
        if !a.ended.is_empty() {
            let pids: Vec<String> = a.ended.iter().map(|p| p.to_string()).collect();
            s.push_str(&format!(
                "; then pg_migsafe ended pid {} (idle in transaction)",
                pids.join(", ")
            ));
        }
        s.push('.');
        detail.push(s);
    }
    if total_attempts > attempts.len() {
        detail.push(format!(
            "{} later attempts are not listed.",
            total_attempts - attempts.len()
        ));
    }
    if spent_before_us > 0 {
        detail.push(format!(
            "Earlier statements of this transaction had used {} of the budget.",
            ms(spent_before_us)
        ));
    }
    detail.push(format!(
        "Each attempt waited at most lock_timeout = {lock_timeout_ms}ms (migsafe.lock_timeout), so other queries on the table queued at most that long; between attempts the lock queue was free."
    ));
    Report {
        message,
        detail: detail.join("\n"),
        hint: "A session idle in transaction keeps its locks until it commits or rolls back: end it (pg_terminate_backend(pid)) or let migsafe.cancel_blockers_after do it, then run the migration again; or raise migsafe.lock_retry_budget.".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_equal_jitter_and_a_cap() {
        for r in [0u64, 1, 12345, u64::MAX] {
            let p1 = backoff_us(1, r, i64::MAX);
            assert!((50_000..=100_000).contains(&p1), "{p1}");
            let p3 = backoff_us(3, r, i64::MAX);
            assert!((200_000..=400_000).contains(&p3), "{p3}");
            let p30 = backoff_us(30, r, i64::MAX);
            assert!((2_500_000..=5_000_000).contains(&p30), "{p30}");
        }
        // Never past the budget.
        assert_eq!(backoff_us(5, 7, 30_000), 30_000);
        assert_eq!(backoff_us(5, 7, -5), 0);
        // Different seeds spread out.
        let a = backoff_us(4, mix(1), i64::MAX);
        let b = backoff_us(4, mix(2), i64::MAX);
        assert_ne!(a, b);
    }

    #[test]
    fn no_pause_eats_the_next_try() {
        // Room for a pause and a 100 ms try.
        let p = next_pause_us(6, 3, 1_000_000, 1000).unwrap();
        assert!(p <= 900_000, "{p}");
        // A pause leaves the try its time even when backoff wants more.
        assert_eq!(next_pause_us(30, 3, 300_000, 5000), Some(200_000));
        // No room for a try: no pause either.
        assert_eq!(next_pause_us(2, 3, 99_999, 5000), None);
        // A lock_timeout shorter than 100 ms is the minimum try.
        assert_eq!(next_pause_us(30, 3, 20_000, 10), Some(10_000));
    }

    #[test]
    fn attempt_timeout_is_cut_to_the_budget() {
        assert_eq!(attempt_timeout_ms(5000, 20_000_000), Some(5000));
        assert_eq!(attempt_timeout_ms(5000, 1_500_000), Some(1500));
        assert_eq!(attempt_timeout_ms(5000, 999), None);
    }

    #[test]
    fn exhausted_report_lists_every_attempt() {
        let b = Blocker {
            pid: 42,
            mode: "RowExclusiveLock".into(),
            state: Some("idle in transaction".into()),
            query: Some("INSERT INTO t VALUES (1)".into()),
        };
        let attempts = vec![
            Attempt {
                waited_us: 1_000_000,
                blockers: vec![b.clone()],
                slept_us: 80_000,
                waited_for: Some("ShareRowExclusiveLock on table public.users".into()),
                ..Default::default()
            },
            Attempt {
                waited_us: 1_000_000,
                blockers: vec![],
                ended: vec![42],
                waited_for: Some("AccessExclusiveLock on table public.t".into()),
                ..Default::default()
            },
        ];
        let r = exhausted_report(&attempts, 2, 2_080_000, 2000, 0, 1000);
        let m = "pg_migsafe: gave up waiting for AccessExclusiveLock on table public.t after 2 attempts in 2.1 s (migsafe.lock_retry_budget = 2000ms is spent)";
        assert_eq!(r.message, m);
        let d = "Attempt 1 waited 1.0 s for ShareRowExclusiveLock on table public.users, blocked by pid 42 (RowExclusiveLock, idle in transaction) running: INSERT INTO t VALUES (1).";
        assert!(r.detail.contains(d), "{}", r.detail);
        let d = "Attempt 2 waited 1.0 s, blocked by sessions that had moved on when pg_migsafe looked; then pg_migsafe ended pid 42 (idle in transaction).";
        assert!(r.detail.contains(d), "{}", r.detail);
        assert!(!r.detail.contains("Earlier statements"));
        let r = exhausted_report(&attempts[..1], 60, 70_000_000, 2000, 500_000, 1000);
        assert!(r.message.contains(
            "waiting for ShareRowExclusiveLock on table public.users after 60 attempts in 70 s"
        ));
        assert!(
            r.detail.contains("Attempt 1 waited 1.0 s, blocked"),
            "{}",
            r.detail
        );
        assert!(r.detail.contains("59 later attempts are not listed."));
        assert!(r.detail.contains("had used 500 ms of the budget"));
    }

    #[test]
    fn attempts_serialize_compactly() {
        let a = Attempt {
            waited_us: 5,
            acquired: true,
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_string(&a).unwrap(),
            r#"{"waited_us":5,"acquired":true}"#
        );
    }
}
