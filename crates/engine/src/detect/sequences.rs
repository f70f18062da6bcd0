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
    /// The statement also changes INCREMENT, AS, CYCLE, MINVALUE, MAXVALUE or START:
    /// where RESTART goes can no longer be judged from the sequence as it is.
    pub reshapes: bool,
}

/// The finding of one ALTER SEQUENCE. `restarts_forward` (does RESTART WITH go past
/// the last value handed out?) is asked only for a RESTART.
pub fn alter_sequence(s: &AlterSequence, restarts_forward: impl FnOnce() -> bool) -> Vec<Finding> {
    let mut out = Vec::new();
    if s.restart && (s.reshapes || !restarts_forward()) {
        out.push(Finding::new(
            known(RuleId::AlterSequenceRestart),
            &s.sequence,
        ));
    }
    if !s.limits.is_empty() {
        out.push(
            Finding::new(known(RuleId::AlterSequenceLimits), &s.sequence)
                .fact(format!("Changes {}", s.limits.join(", "))),
        );
    }
    out
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

    fn rules(fs: &[Finding]) -> Vec<&'static str> {
        fs.iter().map(|f| f.rule.id.as_str()).collect()
    }

    #[test]
    fn restart_is_judged_by_where_it_goes() {
        let r = AlterSequence {
            restart: true,
            ..seq()
        };
        assert_eq!(
            rules(&alter_sequence(&r, || false)),
            ["alter-sequence-restart"]
        );
        assert!(alter_sequence(&r, || true).is_empty());
        // A RESTART that also changes the increment or the limits is not judged
        // from the sequence as it is.
        let reshaped = AlterSequence {
            reshapes: true,
            ..r
        };
        assert_eq!(
            rules(&alter_sequence(&reshaped, || panic!("not asked"))),
            ["alter-sequence-restart"]
        );
    }

    #[test]
    fn limits_are_flagged_with_or_without_a_restart() {
        assert!(alter_sequence(&seq(), || panic!("no restart")).is_empty());
        let l = AlterSequence {
            limits: vec!["MAXVALUE", "CYCLE"],
            ..seq()
        };
        let fs = alter_sequence(&l, || panic!("no restart"));
        assert_eq!(rules(&fs), ["alter-sequence-limits"]);
        assert_eq!(fs[0].facts, ["Changes MAXVALUE, CYCLE"]);
        let both = AlterSequence {
            restart: true,
            reshapes: true,
            ..l
        };
        assert_eq!(
            rules(&alter_sequence(&both, || true)),
            ["alter-sequence-restart", "alter-sequence-limits"]
        );
    }
}
