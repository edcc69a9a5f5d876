//! Which verdict findings count when fuzzing, and the key that makes two hits one finding.
//!
//! Counted: kernel crashes (oops, panic, WARN, KASAN, lockdep, guest panic), FSM violations,
//! hangs (an operation still blocked after the late allowance), a dead guest, and leaks (an
//! mdev, device node, slab object or agent handle that survives the agent's cleanup).
//!
//! Not counted: step outcomes (`Step`: generated steps expect `any`, and which errno a racing
//! step gets depends on the interleaving), and `FsmFinal` / `Dmesg` / `MissingCrash` (they check
//! expectations a generated program does not state), and `TraceLost` (the harness could not
//! see the whole trace; no kernel finding).

use serde::{Deserialize, Serialize};

use crate::run::{FindingKind, Verdict};

/// The kinds of finding the fuzzer reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Crash,
    FsmViolation,
    Hang,
    GuestDead,
    Leak,
    DeviceState,
}

impl Kind {
    pub const ALL: [Kind; 6] = [
        Kind::Crash,
        Kind::FsmViolation,
        Kind::Hang,
        Kind::GuestDead,
        Kind::Leak,
        Kind::DeviceState,
    ];

    /// The kind as the corpus's `meta.json` and the summaries spell it.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Crash => "crash",
            Kind::FsmViolation => "fsm_violation",
            Kind::Hang => "hang",
            Kind::GuestDead => "guest_dead",
            Kind::Leak => "leak",
            Kind::DeviceState => "device_state",
        }
    }

    /// The fuzzer's kind for a verdict finding, or `None` for kinds it ignores.
    pub fn of(k: FindingKind) -> Option<Kind> {
        match k {
            FindingKind::Crash => Some(Kind::Crash),
            FindingKind::FsmViolation => Some(Kind::FsmViolation),
            FindingKind::Hang => Some(Kind::Hang),
            FindingKind::GuestDead => Some(Kind::GuestDead),
            FindingKind::Leak => Some(Kind::Leak),
            FindingKind::DeviceState => Some(Kind::DeviceState),
            FindingKind::Step
            | FindingKind::FsmFinal
            | FindingKind::TraceLost
            | FindingKind::Dmesg
            | FindingKind::MissingCrash
            | FindingKind::EvidenceLost => None,
        }
    }

    /// Whether the VM must be rebooted after a program with this finding. A device-state one
    /// leaves the machine away from its rest, and a device still on its way back (its ccw
    /// device's online pending) would race the next program's first bind: a crash the reuse
    /// arranged, not the program.
    pub fn taints(self) -> bool {
        matches!(
            self,
            Kind::Crash | Kind::Hang | Kind::GuestDead | Kind::DeviceState
        )
    }
}

/// One fuzzing finding of a program.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hit {
    pub kind: Kind,
    /// The verdict's title, as first seen.
    pub title: String,
    /// What makes two hits the same finding (numbers, addresses, names stripped).
    pub key: String,
    pub detail: String,
}

/// The findings of `v` that count for fuzzing, one per key. Fallout of a crash or hang (what
/// the crashed or hung task left blocked, leaked or dead) is not a finding of its own.
pub fn hits(v: &Verdict) -> Vec<Hit> {
    hits_of(v.primary())
}

/// The findings among `findings` that count for fuzzing, one per key.
pub fn hits_of<'a>(findings: impl IntoIterator<Item = &'a crate::run::Finding>) -> Vec<Hit> {
    let mut out: Vec<Hit> = Vec::new();
    for f in findings {
        let Some(kind) = Kind::of(f.kind) else {
            continue;
        };
        if !out.iter().any(|h| h.key == f.key) {
            out.push(Hit {
                kind,
                title: f.title.clone(),
                key: f.key.clone(),
                detail: f.detail.clone(),
            });
        }
    }
    out
}

/// A directory name for a key: lowercase letters, digits and `-`, at most 80 characters.
pub fn slug(key: &str) -> String {
    let mut s = String::new();
    for c in key.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_alphanumeric() {
            s.push(c);
        } else if !s.ends_with('-') && !s.is_empty() {
            s.push('-');
        }
    }
    let s = s.trim_end_matches('-');
    let mut s: String = s.chars().take(80).collect();
    while s.ends_with('-') {
        s.pop();
    }
    if s.is_empty() {
        "finding".into()
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the kernel or the machine is left in after these is not the rest the next
    /// program assumes; a leak or an FSM violation leaves both as they were.
    #[test]
    fn crashes_hangs_dead_guests_and_devices_away_from_rest_retire_the_vm() {
        let tainting: Vec<Kind> = Kind::ALL.into_iter().filter(|k| k.taints()).collect();
        assert_eq!(
            tainting,
            vec![Kind::Crash, Kind::Hang, Kind::GuestDead, Kind::DeviceState]
        );
    }

    #[test]
    fn kind_names_are_the_serde_names() {
        for k in Kind::ALL {
            assert_eq!(
                serde_json::to_value(k).ok(),
                Some(serde_json::json!(k.name()))
            );
        }
    }
    use crate::oracle::fsm::Rule;
    use crate::oracle::leaks::Leak;
    use crate::run::record::Phase;
    use crate::run::{Finding, Subject};

    fn verdict(subjects: Vec<Subject>) -> Verdict {
        let mut findings: Vec<Finding> =
            subjects.into_iter().map(|s| Finding::new(s, "")).collect();
        crate::run::verdict::mark_fallout(&mut findings);
        Verdict {
            passed: findings.is_empty(),
            findings,
            crashes: vec![],
            known_finding: None,
            guest_alive: true,
            steps: 0,
            fsm_violations: 0,
        }
    }

    fn blocked(op: &str, actor: &str, phase: Phase) -> Subject {
        Subject::Blocked {
            op: op.into(),
            actor: actor.into(),
            line: 0,
            phase,
        }
    }

    fn fsm(rule: Rule, schid: &str, ts: f64) -> Subject {
        Subject::FsmViolation {
            rule,
            schid: schid.into(),
            ts,
        }
    }

    #[test]
    fn only_oracle_findings_count_and_repeats_fold() {
        let v = verdict(vec![
            Subject::Step {
                op: "reset".into(),
                actor: "g0".into(),
                line: 0,
                outcome: ccwrig_proto::Outcome::Ok,
                late: None,
                expected: vec!["EINVAL".into()],
                deadline_ms: 1500,
            },
            fsm(Rule::LostUpdate, "0.0.0000", 1.0),
            fsm(Rule::LostUpdate, "0.0.0001", 2.0),
            Subject::DmesgLacks { text: "y".into() },
            blocked("rescan", "g1", Phase::Race),
        ]);
        let h = hits(&v);
        let keys: Vec<&str> = h.iter().map(|h| h.key.as_str()).collect();
        assert_eq!(keys, vec!["fsm: lost_update", "hang: rescan blocked"]);
    }

    #[test]
    fn a_crash_explains_its_fallout() {
        let v = verdict(vec![
            Subject::GuestDead,
            Subject::Crash {
                title: "Oops in f".into(),
                key: "oops: Oops in f".into(),
            },
            blocked("reset", "user", Phase::Race),
            Subject::Leak {
                leak: Leak::DevNode {
                    node: "vfio/0".into(),
                },
            },
            fsm(Rule::Resurrection, "0.0.0000", 1.0),
        ]);
        let kinds: Vec<Kind> = hits(&v).iter().map(|h| h.kind).collect();
        assert_eq!(kinds, vec![Kind::Crash, Kind::FsmViolation]);
    }

    #[test]
    fn a_hang_explains_the_cleanup_it_blocked_and_what_that_left() {
        // The fuzzer's own earlier report: an actor's reset waits behind a stalled request;
        // the blocked cleanup and the five leaks it left were counted as six more findings.
        let v = verdict(vec![
            blocked("reset", "g0", Phase::Race),
            blocked("cleanup", "check", Phase::Check),
            Subject::Leak {
                leak: Leak::Mdev {
                    uuid: "0b3c2f7a-1111-4222-8333-444455556666".into(),
                },
            },
            Subject::Leak {
                leak: Leak::AgentHandle { name: "d0".into() },
            },
        ]);
        let keys: Vec<String> = hits(&v).into_iter().map(|h| h.key).collect();
        assert_eq!(keys, vec!["hang: reset blocked"]);
        assert_eq!(
            v.findings
                .iter()
                .filter(|f| f.fallout_of.as_deref() == Some("hang: reset blocked"))
                .count(),
            3
        );
        // A blocked cleanup alone is the hang, and what it left is its fallout.
        let v = verdict(vec![
            blocked("cleanup", "check", Phase::Check),
            Subject::Leak {
                leak: Leak::AgentHandle { name: "d0".into() },
            },
        ]);
        let keys: Vec<String> = hits(&v).into_iter().map(|h| h.key).collect();
        assert_eq!(keys, vec!["hang: cleanup blocked"]);
    }

    #[test]
    fn slugs_are_path_safe() {
        let table = [
            (
                "crash: Oops: Unable to handle kernel pointer dereference in vfio_ccw_mdev_ioctl",
                "crash-oops-unable-to-handle-kernel-pointer-dereference-in-vfio-ccw-mdev-ioctl",
            ),
            ("fsm: open_in_not_oper", "fsm-open-in-not-oper"),
            ("../..//", "finding"),
            ("guest dead", "guest-dead"),
        ];
        for (k, want) in table {
            assert_eq!(slug(k), want);
        }
        assert!(slug(&"x".repeat(300)).len() <= 80);
    }
}
