//! What a `check()` input does as a whole: a runner (Drizzle, most migrators,
//! `psql -1`) runs a multi-statement migration in one transaction block, so some
//! statements fail there, and locks taken early are held until the last statement
//! commits.
//!
//! [`Migration`] is the state carried from one statement to the next; the
//! statement layer tells it what each statement does, in order.

use crate::policy::Finding;
use crate::rules::{known, RuleId};

/// From this many tables locked ACCESS EXCLUSIVE in one transaction, the lock
/// window is wide: every query on any of them waits for the whole migration.
pub const WIDE_LOCK_TABLES: usize = 3;

/// The state of one `check()` input, statement after statement.
#[derive(Debug, Default)]
pub struct Migration {
    /// More than one statement: a runner runs them in one transaction block.
    pub multi_statement: bool,
    /// Enum values added by earlier statements: (type, value).
    enum_values: Vec<(String, String)>,
    /// Existing tables earlier statements lock ACCESS EXCLUSIVE, held until
    /// commit: (relation id, display form).
    exclusive: Vec<(u32, String)>,
}

impl Migration {
    pub fn new(multi_statement: bool) -> Self {
        Migration {
            multi_statement,
            ..Migration::default()
        }
    }

    /// A statement that cannot run inside a transaction block (`command`, e.g.
    /// `CREATE INDEX CONCURRENTLY`).
    pub fn outside_transaction(&self, command: &str) -> Option<Finding> {
        self.multi_statement.then(|| {
            Finding::new(
                known(RuleId::NotInTransaction),
                format!("statement {command}"),
            )
        })
    }

    /// The values added by earlier ALTER TYPE … ADD VALUE statements.
    pub fn added_enum_values(&self) -> Vec<String> {
        self.enum_values.iter().map(|(_, v)| v.clone()).collect()
    }

    /// ALTER TYPE … ADD VALUE. Even a type created in the same transaction cannot
    /// use a value added before commit (PostgreSQL raises 55P04).
    pub fn enum_value_added(&mut self, ty: String, value: String) {
        self.enum_values.push((ty, value));
    }

    /// A statement uses `value`, one of [`Migration::added_enum_values`].
    pub fn enum_value_used(&self, value: &str) -> Option<Finding> {
        let (ty, _) = self.enum_values.iter().find(|(_, v)| v == value)?;
        Some(
            Finding::new(
                known(RuleId::EnumValueUsedBeforeCommit),
                format!("type {ty}"),
            )
            .fact(format!("Value '{value}', added earlier in this input")),
        )
    }

    /// Does an earlier statement hold ACCESS EXCLUSIVE on this table until commit?
    pub fn holds_exclusive(&self, rel: u32) -> bool {
        self.multi_statement && self.exclusive.iter().any(|(r, _)| *r == rel)
    }

    /// An UPDATE / INSERT … SELECT / DELETE over `table`, which an earlier
    /// statement locks ACCESS EXCLUSIVE. `rows`: the planner's estimate, `None`
    /// when never analysed (not taken for empty).
    pub fn backfill(&self, rel: u32, table: &str, rows: Option<f64>) -> Option<Finding> {
        if !self.holds_exclusive(rel) || rows == Some(0.0) {
            return None;
        }
        let size = match rows {
            Some(n) => format!("About {n:.0} rows (the planner's estimate)"),
            None => "The table has never been analysed: its size is unknown".into(),
        };
        Some(Finding::new(known(RuleId::BackfillUnderLock), table).fact(size))
    }

    /// A statement locks an existing table ACCESS EXCLUSIVE: it is held until
    /// commit. The table that makes the window wide is reported, once.
    pub fn locks_exclusive(&mut self, rel: u32, table: String) -> Option<Finding> {
        if !self.multi_statement || self.exclusive.iter().any(|(r, _)| *r == rel) {
            return None;
        }
        self.exclusive.push((rel, table));
        if self.exclusive.len() != WIDE_LOCK_TABLES {
            return None;
        }
        let (held, last) = self.exclusive.split_at(WIDE_LOCK_TABLES - 1);
        let held: Vec<&str> = held.iter().map(|(_, d)| d.as_str()).collect();
        Some(
            Finding::new(known(RuleId::WideLockWindow), &last[0].1)
                .fact(format!("Already held until commit: {}", held.join(", "))),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_statement_alone_is_never_in_a_runners_transaction() {
        let mut m = Migration::new(false);
        assert!(m.outside_transaction("CREATE INDEX CONCURRENTLY").is_none());
        assert!(m.locks_exclusive(1, "table public.a".into()).is_none());
        assert!(!m.holds_exclusive(1));
        let m = Migration::new(true);
        let f = m.outside_transaction("CREATE INDEX CONCURRENTLY").unwrap();
        assert_eq!(f.rule.id, RuleId::NotInTransaction);
        assert_eq!(f.object, "statement CREATE INDEX CONCURRENTLY");
    }

    #[test]
    fn an_added_enum_value_cannot_be_used_before_commit() {
        let mut m = Migration::new(false);
        assert!(m.enum_value_used("archived").is_none());
        m.enum_value_added("public.status".into(), "archived".into());
        assert_eq!(m.added_enum_values(), ["archived"]);
        let f = m.enum_value_used("archived").unwrap();
        assert_eq!(f.rule.id, RuleId::EnumValueUsedBeforeCommit);
        assert_eq!(f.object, "type public.status");
        assert!(m.enum_value_used("active").is_none());
    }

    #[test]
    fn a_backfill_under_an_earlier_exclusive_lock_holds_it_for_every_row() {
        let mut m = Migration::new(true);
        assert!(m.backfill(7, "table public.users", Some(10.0)).is_none());
        m.locks_exclusive(7, "table public.users".into());
        let f = m.backfill(7, "table public.users", Some(1200.0)).unwrap();
        assert_eq!(f.rule.id, RuleId::BackfillUnderLock);
        assert_eq!(f.facts, ["About 1200 rows (the planner's estimate)"]);
        assert!(m.backfill(7, "table public.users", None).unwrap().facts[0].contains("unknown"));
        assert!(m.backfill(7, "table public.users", Some(0.0)).is_none());
        assert!(m.backfill(8, "table public.other", None).is_none());
    }

    #[test]
    fn the_third_exclusively_locked_table_widens_the_window_once() {
        let mut m = Migration::new(true);
        assert!(m.locks_exclusive(1, "table public.a".into()).is_none());
        assert!(m.locks_exclusive(1, "table public.a".into()).is_none());
        assert!(m.locks_exclusive(2, "table public.b".into()).is_none());
        let f = m.locks_exclusive(3, "table public.c".into()).unwrap();
        assert_eq!(f.rule.id, RuleId::WideLockWindow);
        assert_eq!(f.object, "table public.c");
        assert_eq!(
            f.facts,
            ["Already held until commit: table public.a, table public.b"]
        );
        assert!(m.locks_exclusive(4, "table public.d".into()).is_none());
    }
}
