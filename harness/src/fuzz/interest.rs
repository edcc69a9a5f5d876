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

use std::sync::LazyLock;

use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::oracle::crash;
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
}

impl Kind {
    /// The fuzzer's kind for a verdict finding, or `None` for kinds it ignores.
    pub fn of(k: FindingKind) -> Option<Kind> {
        match k {
            FindingKind::Crash => Some(Kind::Crash),
            FindingKind::FsmViolation => Some(Kind::FsmViolation),
            FindingKind::Hang => Some(Kind::Hang),
            FindingKind::GuestDead => Some(Kind::GuestDead),
            FindingKind::Leak => Some(Kind::Leak),
            FindingKind::Step
            | FindingKind::FsmFinal
            | FindingKind::TraceLost
            | FindingKind::Dmesg
            | FindingKind::MissingCrash => None,
        }
    }

    /// Whether the VM must be rebooted after a program with this finding.
    pub fn taints(self) -> bool {
        matches!(self, Kind::Crash | Kind::Hang | Kind::GuestDead)
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

static FSM_TITLE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^FSM: (\S+)").expect("static regex"));
static HANG_TITLE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^(\S+) by \S+ still blocked").expect("static regex"));
static UUID: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
        .expect("static regex")
});
static SCHID: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\b\d+\.\d+\.[0-9a-f]{4}\b").expect("static regex"));
static NUM: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\b(0x)?[0-9a-f]*\d[0-9a-f]*\b").expect("static regex"));
static HANDLE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\bholds \S+").expect("static regex"));

/// The dedup key of a non-crash finding title: the same bug on another subchannel, at another
/// time, by another actor or with other counts is the same finding.
pub fn key_of_title(kind: Kind, title: &str) -> String {
    match kind {
        Kind::Crash => format!("crash: {title}"),
        Kind::FsmViolation => match FSM_TITLE.captures(title) {
            Some(c) => format!("fsm: {}", &c[1]),
            None => format!("fsm: {title}"),
        },
        Kind::Hang => match HANG_TITLE.captures(title) {
            Some(c) => format!("hang: {} blocked", &c[1]),
            None => format!("hang: {title}"),
        },
        Kind::GuestDead => "guest dead".into(),
        Kind::Leak => {
            let t = UUID.replace_all(title, "UUID");
            let t = SCHID.replace_all(&t, "SCHID");
            let t = HANDLE.replace_all(&t, "holds HANDLE");
            format!(
                "leak: {}",
                NUM.replace_all(t.trim_start_matches("leak: "), "N")
            )
        }
    }
}

/// The findings of `v` that count for fuzzing, one per key.
pub fn hits(v: &Verdict) -> Vec<Hit> {
    let mut out: Vec<Hit> = Vec::new();
    for f in &v.findings {
        let Some(kind) = Kind::of(f.kind) else {
            continue;
        };
        let key = match kind {
            // The crash oracle's own key, from the report the finding came from.
            Kind::Crash => v
                .crashes
                .iter()
                .find(|c| c.title == f.title)
                .map(|c| format!("crash: {}", crash::dedup_key(c)))
                .unwrap_or_else(|| key_of_title(kind, &f.title)),
            _ => key_of_title(kind, &f.title),
        };
        if !out.iter().any(|h| h.key == key) {
            out.push(Hit {
                kind,
                title: f.title.clone(),
                key,
                detail: f.detail.clone(),
            });
        }
    }
    // After a crash, hangs, leaks and a dead guest are its fallout (the oopsing task held the
    // fd, the mutex, the mdev): the crash is the finding. FSM violations stay: they may be
    // what led to it.
    if out.iter().any(|h| h.kind == Kind::Crash) {
        out.retain(|h| matches!(h.kind, Kind::Crash | Kind::FsmViolation));
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
    use crate::run::Finding;

    #[test]
    fn keys_ignore_incidental_detail() {
        let same: &[(Kind, &str, &str)] = &[
            (
                Kind::FsmViolation,
                "FSM: open_in_not_oper on 0.0.0000 at 12.345678",
                "FSM: open_in_not_oper on 0.0.0001 at 99.000001",
            ),
            (
                Kind::Hang,
                "mdev_remove by g0 still blocked at the end of the run",
                "mdev_remove by g2 still blocked at the end of the run",
            ),
            (
                Kind::Leak,
                "leak: vfio_ccw_io_region slab grew 3 -> 4",
                "leak: vfio_ccw_io_region slab grew 10 -> 12",
            ),
            (
                Kind::Leak,
                "leak: mdev 0b3c2f7a-1111-4222-8333-444455556666 still exists",
                "leak: mdev 9d3c2f7a-aaaa-4bbb-8ccc-ddddeeeeffff still exists",
            ),
            (
                Kind::Leak,
                "leak: agent still holds h3",
                "leak: agent still holds h0",
            ),
            (
                Kind::Leak,
                "subchannel 0.0.0000 vanished",
                "subchannel 0.0.0001 vanished",
            ),
        ];
        for (kind, a, b) in same {
            assert_eq!(key_of_title(*kind, a), key_of_title(*kind, b), "{a} vs {b}");
        }
        let different: &[(Kind, &str, &str)] = &[
            (
                Kind::FsmViolation,
                "FSM: open_in_not_oper on 0.0.0000 at 1.0",
                "FSM: state_after_not_oper on 0.0.0000 at 1.0",
            ),
            (
                Kind::Hang,
                "mdev_remove by g0 still blocked at the end of the run",
                "rescan by g0 still blocked at the end of the run",
            ),
        ];
        for (kind, a, b) in different {
            assert_ne!(key_of_title(*kind, a), key_of_title(*kind, b), "{a} vs {b}");
        }
    }

    fn verdict(findings: Vec<(FindingKind, &str)>) -> Verdict {
        Verdict {
            passed: findings.is_empty(),
            findings: findings
                .into_iter()
                .map(|(kind, t)| Finding {
                    kind,
                    title: t.into(),
                    detail: String::new(),
                })
                .collect(),
            crashes: vec![],
            known_finding: None,
            guest_alive: true,
            steps: 0,
            fsm_violations: 0,
        }
    }

    #[test]
    fn only_oracle_findings_count_and_repeats_fold() {
        let v = verdict(vec![
            (
                FindingKind::Step,
                "reset by g0 (line 0): EINVAL not in [ok]",
            ),
            (FindingKind::FsmViolation, "FSM: x on 0.0.0000 at 1.0"),
            (FindingKind::FsmViolation, "FSM: x on 0.0.0000 at 2.0"),
            (FindingKind::Dmesg, "kernel log lacks \"y\""),
            (
                FindingKind::Hang,
                "rescan by g1 still blocked at the end of the run",
            ),
        ]);
        let h = hits(&v);
        let keys: Vec<&str> = h.iter().map(|h| h.key.as_str()).collect();
        assert_eq!(keys, vec!["fsm: x", "hang: rescan blocked"]);
    }

    #[test]
    fn a_crash_explains_its_fallout() {
        let v = verdict(vec![
            (FindingKind::GuestDead, "guest stopped answering"),
            (FindingKind::Crash, "Oops in f"),
            (
                FindingKind::Hang,
                "reset by user still blocked at the end of the run",
            ),
            (FindingKind::Leak, "leak: vfio/0 still exists"),
            (FindingKind::FsmViolation, "FSM: x on 0.0.0000 at 1.0"),
        ]);
        let kinds: Vec<Kind> = hits(&v).iter().map(|h| h.kind).collect();
        assert_eq!(kinds, vec![Kind::Crash, Kind::FsmViolation]);
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
