//! ALTER SEQUENCE (and setval(), in check()).

use crate::policy::Finding;
use crate::rules::{known, RuleId};

/// What an ALTER SEQUENCE does to an existing sequence.
#[derive(Debug, Default, Clone)]
pub struct AlterSequence {
    /// e.g. `sequence public.tickets_id_seq`.
    pub sequence: String,
    /// RESTART [WITH n].
    pub restart: bool,
    /// The limits it changes that can stop the sequence or make it repeat: a narrower
    /// AS type, MAXVALUE, MINVALUE, CYCLE.
    pub limits: Vec<&'static str>,
}

/// The finding of one ALTER SEQUENCE. `restarts_forward` (does RESTART WITH go past
/// the last value handed out?) is asked only for a RESTART.
pub fn alter_sequence(
    s: &AlterSequence,
    restarts_forward: impl FnOnce() -> bool,
) -> Option<Finding> {
    if s.restart {
        return (!restarts_forward())
            .then(|| Finding::new(known(RuleId::AlterSequenceRestart), &s.sequence));
    }
    (!s.limits.is_empty()).then(|| {
        Finding::new(known(RuleId::AlterSequenceLimits), &s.sequence)
            .fact(format!("Changes {}", s.limits.join(", ")))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seq() -> AlterSequence {
        AlterSequence {
            sequence: "sequence public.s".into(),
            ..AlterSequence::default()
        }
    }

    #[test]
    fn restart_is_judged_by_where_it_goes() {
        let r = AlterSequence {
            restart: true,
            ..seq()
        };
        assert_eq!(
            alter_sequence(&r, || false).map(|f| f.rule.id.as_str()),
            Some("alter-sequence-restart")
        );
        assert!(alter_sequence(&r, || true).is_none());
    }

    #[test]
    fn limits_are_flagged_and_other_options_are_not() {
        assert!(alter_sequence(&seq(), || panic!("no restart")).is_none());
        let l = AlterSequence {
            limits: vec!["MAXVALUE", "CYCLE"],
            ..seq()
        };
        let f = alter_sequence(&l, || panic!("no restart")).unwrap();
        assert_eq!(f.rule.id.as_str(), "alter-sequence-limits");
        assert_eq!(f.facts, ["Changes MAXVALUE, CYCLE"]);
    }
}
