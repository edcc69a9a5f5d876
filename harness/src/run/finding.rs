//! A finding is a typed fact an oracle established about a run. Its title (for people) and its
//! dedup key (for the fuzzer and the known-findings match) are derived from that fact when the
//! finding is made, so nothing downstream ever has to parse a title back into its meaning.

use std::path::PathBuf;

use ccwrig_proto::Outcome;
use serde::{Deserialize, Serialize};

use super::record::Phase;
use crate::oracle::fsm::Rule;
use crate::oracle::leaks::Leak;

/// The coarse class of a finding: what the verdict line and the fuzzer's interest filter need.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    /// A kernel crash report (oops, WARN, KASAN, ...) or a guest panic.
    Crash,
    /// A step's outcome was not one the scenario allowed.
    Step,
    /// An operation or a kernel thread still blocked when the run ended.
    Hang,
    /// The guest stopped answering the agent protocol.
    GuestDead,
    FsmViolation,
    FsmFinal,
    /// The trace ring buffer overran: the FSM replay misses events (its violations may be
    /// artefacts, real ones may be missed). Not a kernel finding; the run cannot be judged.
    TraceLost,
    Dmesg,
    Leak,
    /// The scenario expected a crash that did not happen.
    MissingCrash,
    /// The guest's devices disagree with the devices QEMU has.
    DeviceState,
    /// The harness could not keep a piece of the run's evidence (a failed artifact write).
    /// Not a kernel finding, but the run cannot be trusted to be complete.
    EvidenceLost,
}

/// What a finding is about, with the facts that identify it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Subject {
    /// A crash report; `key` is the crash oracle's dedup key (kind and guilty frame).
    Crash {
        title: String,
        key: String,
    },
    /// `expect.crash` named a crash that did not happen.
    MissingCrash {
        pattern: String,
    },
    /// A step ended in an outcome the scenario did not allow. `late` is how a step that was
    /// still blocked at its deadline finished afterwards.
    Step {
        op: String,
        actor: String,
        line: usize,
        outcome: Outcome,
        late: Option<Outcome>,
        expected: Vec<String>,
        deadline_ms: u64,
    },
    /// An operation still blocked when the run ended.
    Blocked {
        op: String,
        actor: String,
        line: usize,
        phase: Phase,
    },
    /// A kernel thread in D state, in the same function, at both end-of-run checks.
    StuckTask {
        wchan: String,
        comm: String,
    },
    GuestDead,
    /// The guest was powered off (or restarted) and did not get off: stuck in the kernel's
    /// shutdown path (`device_shutdown` and what comes before it).
    PoweroffHung {
        #[serde(default)]
        restart: bool,
        /// The function each vCPU was in when QEMU was asked (`info registers`), when known:
        /// one in `smp_send_stop` is the power-off waiting for the others to stop.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        cpus: Vec<String>,
    },
    FsmViolation {
        rule: Rule,
        schid: String,
        ts: f64,
    },
    /// `expect.fsm_final`: `got` is None when the subchannel had no FSM events or the kernel
    /// has no FSM map.
    FsmFinal {
        schid: String,
        got: Option<String>,
        want: String,
    },
    NoFsmMap {
        release: String,
    },
    TraceLost {
        lost: Option<u64>,
    },
    DmesgLacks {
        text: String,
    },
    DmesgHas {
        text: String,
    },
    Leak {
        leak: Leak,
    },
    DeviceState {
        disagreement: crate::oracle::devices::Disagreement,
    },
    EvidenceLost {
        path: PathBuf,
        error: String,
    },
}

impl Subject {
    pub fn kind(&self) -> FindingKind {
        match self {
            Subject::Crash { .. } => FindingKind::Crash,
            Subject::MissingCrash { .. } => FindingKind::MissingCrash,
            Subject::Step { .. } => FindingKind::Step,
            Subject::Blocked { .. } | Subject::StuckTask { .. } | Subject::PoweroffHung { .. } => {
                FindingKind::Hang
            }
            Subject::GuestDead => FindingKind::GuestDead,
            Subject::FsmViolation { .. } => FindingKind::FsmViolation,
            Subject::FsmFinal { .. } | Subject::NoFsmMap { .. } => FindingKind::FsmFinal,
            Subject::TraceLost { .. } => FindingKind::TraceLost,
            Subject::DmesgLacks { .. } | Subject::DmesgHas { .. } => FindingKind::Dmesg,
            Subject::Leak { .. } => FindingKind::Leak,
            Subject::DeviceState { .. } => FindingKind::DeviceState,
            Subject::EvidenceLost { .. } => FindingKind::EvidenceLost,
        }
    }

    /// The one-line title: what happened, in the words a kernel developer would use.
    pub fn title(&self) -> String {
        match self {
            Subject::Crash { title, .. } => title.clone(),
            Subject::MissingCrash { pattern } => format!("expected a crash matching /{pattern}/"),
            Subject::Step {
                op,
                actor,
                line,
                outcome,
                late,
                expected,
                deadline_ms,
            } => {
                let expected = expected.join(" or ");
                match late {
                    Some(l) => format!(
                        "{op} by {actor} (line {line}): blocked past its {deadline_ms} ms \
                         deadline, then {}; expected {expected}",
                        l.short()
                    ),
                    None => format!(
                        "{op} by {actor} (line {line}): {}, expected {expected}",
                        outcome.short()
                    ),
                }
            }
            Subject::Blocked { op, actor, .. } => {
                format!("{op} by {actor} still blocked at the end of the run")
            }
            Subject::StuckTask { wchan, .. } => format!("task stuck in {wchan}"),
            Subject::GuestDead => "guest stopped answering".into(),
            Subject::PoweroffHung { restart, cpus } => {
                let what = match restart {
                    false => "guest did not power off",
                    true => "guest did not restart",
                };
                match cpus.is_empty() {
                    true => what.into(),
                    false => format!("{what} (vCPUs in {})", cpus.join(", ")),
                }
            }
            Subject::FsmViolation { rule, schid, ts } => {
                format!("FSM: {} on {schid} at {ts:.6}", rule.name())
            }
            Subject::FsmFinal { schid, got, want } => format!(
                "FSM: {schid} ended in {}, expected {want}",
                got.as_deref().unwrap_or("(no FSM events)")
            ),
            Subject::NoFsmMap { release } => format!("no FSM map for kernel {release}"),
            Subject::TraceLost { .. } => {
                "FSM trace incomplete: the ring buffer dropped events".into()
            }
            Subject::DmesgLacks { text } => format!("kernel log lacks {text:?}"),
            Subject::DmesgHas { text } => format!("kernel log contains {text:?}"),
            Subject::Leak { leak } => leak_title(leak),
            Subject::DeviceState { disagreement } => disagreement.title(),
            Subject::EvidenceLost { path, error } => {
                format!("evidence lost: writing {} failed: {error}", path.display())
            }
        }
    }

    /// What makes two findings the same bug: the same crash, FSM rule, blocked operation or
    /// kind of leftover, whatever subchannel, time, actor, UUID or count it came with.
    pub fn key(&self) -> String {
        match self {
            Subject::Crash { key, .. } => format!("crash: {key}"),
            Subject::FsmViolation { rule, .. } => format!("fsm: {}", rule.name()),
            Subject::Blocked { op, .. } => format!("hang: {op} blocked"),
            Subject::StuckTask { wchan, .. } => format!("hang: task stuck in {wchan}"),
            Subject::GuestDead => "guest dead".into(),
            // Where the vCPUs were is the symptom's place, not its identity: the one that does
            // not stop is wherever it was when the stop came.
            Subject::PoweroffHung { restart: false, .. } => "hang: poweroff".into(),
            Subject::PoweroffHung { restart: true, .. } => "hang: restart".into(),
            Subject::Leak { leak } => format!("leak: {}", leak_key(leak)),
            Subject::DeviceState { disagreement } => {
                format!("device state: {}", disagreement.key())
            }
            Subject::Step {
                op, outcome, late, ..
            } => format!("step: {op} {}", late.as_ref().unwrap_or(outcome).short()),
            Subject::MissingCrash { pattern } => format!("missing crash: {pattern}"),
            Subject::FsmFinal {
                schid: _,
                got,
                want,
            } => format!(
                "fsm final: {} expected {want}",
                got.as_deref().unwrap_or("none")
            ),
            Subject::NoFsmMap { .. } => "no fsm map".into(),
            Subject::TraceLost { .. } => "trace lost".into(),
            Subject::DmesgLacks { text } => format!("dmesg lacks: {text}"),
            Subject::DmesgHas { text } => format!("dmesg has: {text}"),
            Subject::EvidenceLost { path, .. } => format!(
                "evidence lost: {}",
                path.file_name().map_or_else(
                    || path.display().to_string(),
                    |n| n.to_string_lossy().into_owned()
                )
            ),
        }
    }
}

fn leak_title(l: &Leak) -> String {
    match l {
        Leak::Slab {
            cache,
            before,
            after,
        } => format!("leak: {cache} slab grew {before} -> {after}"),
        Leak::Instances {
            schid,
            before,
            after,
        } => format!("leak: {schid} available_instances {before} -> {after}"),
        Leak::Mdev { uuid } => format!("leak: mdev {uuid} still exists"),
        Leak::DevNode { node } => format!("leak: {node} still exists"),
        Leak::AgentHandle { name } => format!("leak: agent still holds {name}"),
        Leak::SubchannelGone { schid } => format!("subchannel {schid} vanished"),
        Leak::Kmemleak { title, .. } => title.clone(),
    }
}

/// The leak's kind and the names that identify the object class, without instance numbers.
/// These strings are the keys fuzz campaigns have stored on disk since the first round:
/// keep them stable.
fn leak_key(l: &Leak) -> String {
    match l {
        Leak::Slab { cache, .. } => format!("{} slab grew N -> N", without_numbers(cache)),
        Leak::Instances { .. } => "SCHID available_instances N -> N".into(),
        Leak::Mdev { .. } => "mdev UUID still exists".into(),
        Leak::DevNode { node } => format!("{} still exists", without_numbers(node)),
        Leak::AgentHandle { .. } => "agent still holds HANDLE".into(),
        Leak::SubchannelGone { .. } => "subchannel SCHID vanished".into(),
        Leak::Kmemleak { guilty, .. } => format!("kmemleak in {guilty}"),
    }
}

/// `kmalloc-64` -> `kmalloc-N`, `vfio/3` -> `vfio/N`, `devices/vfio0` -> `devices/vfioN`:
/// each maximal run of digits becomes `N`.
fn without_numbers(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut in_digits = false;
    for c in s.chars() {
        if c.is_ascii_digit() {
            if !in_digits {
                out.push('N');
            }
            in_digits = true;
        } else {
            out.push(c);
            in_digits = false;
        }
    }
    out
}

/// One finding of a run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Finding {
    pub kind: FindingKind,
    pub title: String,
    /// Two findings with one key are the same bug (see [`Subject::key`]).
    pub key: String,
    pub subject: Subject,
    pub detail: String,
    /// The key of the crash or hang this finding followed from (leaks, a blocked cleanup and
    /// a dead guest after a hang or crash are its consequences, not bugs of their own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallout_of: Option<String>,
    /// The title pattern of the suite-wide known finding it matched (`findings/known.toml`):
    /// reported, but not failing the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub known: Option<String>,
}

impl Finding {
    pub fn new(subject: Subject, detail: impl Into<String>) -> Finding {
        Finding {
            kind: subject.kind(),
            title: subject.title(),
            key: subject.key(),
            subject,
            detail: detail.into(),
            fallout_of: None,
            known: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(outcome: Outcome, late: Option<Outcome>) -> Subject {
        Subject::Step {
            op: "snapshot".into(),
            actor: "user".into(),
            line: 33,
            outcome,
            late,
            expected: vec!["ok".into()],
            deadline_ms: 5000,
        }
    }

    #[test]
    fn titles_say_what_happened() {
        // The debug-profile flake of issue 18 was titled "ok not in [ok]".
        let late = step(Outcome::Blocked { after_ms: 5000 }, Some(Outcome::Ok));
        assert_eq!(
            late.title(),
            "snapshot by user (line 33): blocked past its 5000 ms deadline, then ok; expected ok"
        );
        let wrong = step(
            Outcome::Errno {
                name: "EBUSY".into(),
                code: 16,
                call: "x".into(),
            },
            None,
        );
        assert_eq!(
            wrong.title(),
            "snapshot by user (line 33): EBUSY, expected ok"
        );
        let still = step(Outcome::Blocked { after_ms: 5000 }, None);
        assert!(!still.title().contains("not in"), "{}", still.title());
    }

    #[test]
    fn keys_ignore_instances_and_match_stored_campaign_keys() {
        let a = Subject::Leak {
            leak: Leak::Mdev {
                uuid: "8f1c6d3e-0000-4000-8000-000000000001".into(),
            },
        };
        let b = Subject::Leak {
            leak: Leak::Mdev {
                uuid: "00000000-0000-4000-8000-00000000ffff".into(),
            },
        };
        assert_eq!(a.key(), b.key());
        // The keys below are spelled as the first round's title-derived keys were, so a fuzz
        // findings directory from then still recognises its findings.
        let table: Vec<(Subject, &str)> = vec![
            (
                Subject::Leak {
                    leak: Leak::Slab {
                        cache: "kmalloc-64".into(),
                        before: 3,
                        after: 4,
                    },
                },
                "leak: kmalloc-N slab grew N -> N",
            ),
            (
                Subject::Leak {
                    leak: Leak::DevNode {
                        node: "vfio/12".into(),
                    },
                },
                "leak: vfio/N still exists",
            ),
            (
                Subject::Leak {
                    leak: Leak::Instances {
                        schid: "0.0.0001".into(),
                        before: 1,
                        after: 0,
                    },
                },
                "leak: SCHID available_instances N -> N",
            ),
            (
                Subject::Leak {
                    leak: Leak::AgentHandle { name: "d7".into() },
                },
                "leak: agent still holds HANDLE",
            ),
            (
                Subject::FsmViolation {
                    rule: Rule::LostUpdate,
                    schid: "0.0.0002".into(),
                    ts: 12.5,
                },
                "fsm: lost_update",
            ),
            (
                Subject::Blocked {
                    op: "reset".into(),
                    actor: "a1".into(),
                    line: 0,
                    phase: Phase::Race,
                },
                "hang: reset blocked",
            ),
            (
                Subject::StuckTask {
                    wchan: "ccw_device_set_online".into(),
                    comm: "kworker/0:1".into(),
                },
                "hang: task stuck in ccw_device_set_online",
            ),
            (Subject::GuestDead, "guest dead"),
        ];
        for (s, key) in table {
            assert_eq!(s.key(), key, "{s:?}");
        }
    }
}
