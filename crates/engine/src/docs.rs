//! Renders `docs/rules.md` from the catalog. A unit test fails when the committed
//! file is stale; `make docs` (MIGSAFE_BLESS=1) rewrites it.

use super::rules::{Severity, RETIRED, RULES};
use std::fmt::Write;

pub fn render_rules_md() -> String {
    let mut s = String::new();
    s.push_str("# Rule catalog\n\n");
    s.push_str(
        "<!-- Generated from crates/engine/src/rules.rs by `make docs`; a test fails when this file is stale. -->\n\n",
    );
    s.push_str(
        "Every statement the hook sees is classified on its parse tree. Each finding names one of the\n\
         rules below. `destructive` findings are refused in `enforce` mode, `risky` ones are allowed\n\
         with a WARNING (refused when `migsafe.block_risky = on`), self-protection rules are refused in\n\
         every mode but `off`. `migsafe.check(sql)` reports the same findings without running anything,\n\
         and `SELECT * FROM migsafe.rules()` returns this table. Refusals use SQLSTATE `MS001`,\n\
         warnings `MS002` (see docs/configuration.md).\n\n\
         Context changes the verdict: objects created earlier in the same transaction and temporary\n\
         objects are exempt from every rule; type changes the server can do without a rewrite are\n\
         safe. Each rule's *bad* and *good* examples are executed by the integration tests after its\n\
         *setup*.\n\n",
    );
    s.push_str("| id | severity | lock | table work | data loss |\n|---|---|---|---|---|\n");
    for r in RULES {
        let sev = if r.protects_extension {
            "destructive (self-protection)".to_string()
        } else if r.check_only {
            format!("{} (check() only)", r.severity.as_str())
        } else {
            r.severity.as_str().to_string()
        };
        let _ = writeln!(
            s,
            "| [`{}`](#{}) | {} | {} | {} | {} |",
            r.id,
            r.id,
            sev,
            r.lock,
            r.work.as_str(),
            if r.data_loss { "yes" } else { "no" }
        );
    }
    for sev in [Severity::Destructive, Severity::Risky] {
        let _ = writeln!(
            s,
            "\n## {} rules\n",
            if sev == Severity::Destructive {
                "Destructive"
            } else {
                "Risky"
            }
        );
        for r in RULES.iter().filter(|r| r.severity == sev) {
            let _ = writeln!(s, "### {}\n", r.id);
            let _ = writeln!(s, "**{}** — {}.\n", r.title, r.message);
            let _ = writeln!(
                s,
                "- severity: {}{}{}\n- lock: {}\n- table work: {}\n- data loss: {}\n- safe alternative: {}\n",
                r.severity.as_str(),
                if r.protects_extension { " (self-protection: refused in every mode but `off`, cannot be disabled)" } else { "" },
                if r.check_only { " (reported by `migsafe.check()` only; the hook never sees DML)" } else { "" },
                r.lock,
                r.work.as_str(),
                if r.data_loss { "yes" } else { "no" },
                r.safe_alternative
            );
            let _ = writeln!(s, "Given:\n\n```sql\n{}\n```\n", r.setup);
            let _ = writeln!(s, "Bad:\n\n```sql\n{}\n```\n", r.bad);
            let _ = writeln!(s, "Good:\n\n```sql\n{}\n```\n", r.good);
        }
    }
    s.push_str(
        "## Retired rules\n\n\
         These ids no longer fire. `migsafe.disabled_rules` still accepts them (and ignores \
         them), so a configuration written for an earlier release keeps working.\n\n",
    );
    for (id, release, why) in RETIRED {
        let _ = writeln!(s, "- `{id}` (retired in {release}): {why}.");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docs_rules_md_is_current() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/rules.md");
        let want = render_rules_md();
        if std::env::var_os("MIGSAFE_BLESS").is_some() {
            std::fs::write(path, &want).expect("write docs/rules.md");
            return;
        }
        let have = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            have == want,
            "docs/rules.md is stale: run `make docs` and commit the result"
        );
    }

    #[test]
    fn every_rule_has_a_section() {
        let md = render_rules_md();
        for r in RULES {
            assert!(md.contains(&format!("### {}\n", r.id)), "{}", r.id);
        }
    }
}
