//! A run's verdict, computed only from the oracles and the step records — never from ad-hoc
//! greps inside scenarios. Each oracle is one function from the evidence to typed findings;
//! `judge` runs them all, marks what is fallout of a crash or hang, and matches the scenario's
//! known finding. Nothing here writes files: the runner owns the run directory.

use std::path::PathBuf;

use ccwrig_proto::Outcome;
use serde::{Deserialize, Serialize};

use super::finding::{Finding, FindingKind, Subject};
use super::record::{Phase, StepRecord};
use crate::oracle;
use crate::scenario::{CrashExpect, FsmViolationsExpect, KnownFinding, LeaksExpect, Scenario};
use crate::vm::QmpEvent;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Verdict {
    pub passed: bool,
    pub findings: Vec<Finding>,
    /// Crash reports the oracle found (also those a scenario expected).
    pub crashes: Vec<oracle::crash::CrashReport>,
    /// Set when a finding matched the scenario's `known_finding`: the run reproduced that
    /// known bug (its other findings are its consequences).
    pub known_finding: Option<String>,
    pub guest_alive: bool,
    pub steps: usize,
    pub fsm_violations: usize,
}

impl Verdict {
    /// Adds artifacts lost after the verdict was made (`result.json` itself): the run fails,
    /// since its evidence is incomplete.
    pub fn lose_evidence(&mut self, lost: Vec<(PathBuf, String)>) {
        for (path, error) in lost {
            if !self
                .findings
                .iter()
                .any(|f| matches!(&f.subject, Subject::EvidenceLost { path: p, .. } if *p == path))
            {
                self.findings.push(evidence_lost(path, error));
                self.passed = false;
            }
        }
    }

    /// The findings that are bugs of their own (not fallout of a crash or hang).
    pub fn primary(&self) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(|f| f.fallout_of.is_none())
    }

    /// One line: `PASS`, `FAIL: <first finding>`, or `KNOWN FINDING: <title>`.
    pub fn line(&self) -> String {
        let fallout = self.findings.len() - self.primary().count();
        let more = |n: usize| match (n, fallout) {
            (0, 0) => String::new(),
            (n, 0) => format!(" (+{n} more)"),
            (0, c) => format!(" (+{c} consequences)"),
            (n, c) => format!(" (+{n} more, {c} consequences)"),
        };
        match (self.passed, &self.known_finding, self.primary().next()) {
            (true, Some(k), _) => {
                let others = self.findings.len().saturating_sub(1);
                match others {
                    0 => format!("KNOWN FINDING: {k}"),
                    n => format!("KNOWN FINDING: {k} (+{n} consequences)"),
                }
            }
            (true, None, _) => "PASS".into(),
            (false, _, Some(first)) => {
                // The headline is what failed the run, not a suite-wide known finding beside it.
                let f = self.primary().find(|f| f.known.is_none()).unwrap_or(first);
                format!("FAIL: {}{}", f.title, more(self.primary().count() - 1))
            }
            (false, _, None) => "FAIL".into(),
        }
    }
}

/// What the guest said during one program: the slices of the VM's streams since the program
/// started (a long-lived fuzzing VM runs many programs).
#[derive(Debug, Clone, Default)]
pub struct Evidence {
    pub console: String,
    pub kmsg: Vec<String>,
    pub trace: Vec<String>,
    pub qmp_events: Vec<QmpEvent>,
    pub baseline: Option<oracle::leaks::SysSnapshot>,
    pub after: Option<oracle::leaks::SysSnapshot>,
    pub alive: bool,
    /// The kernel's blocked-task dump, taken when a step hung or the guest stopped answering.
    pub blocked_dump: Option<String>,
    /// Threads in D state at both end-of-run checks (oracle::stuck).
    pub stuck: Vec<oracle::stuck::StuckTask>,
    /// Artifacts of this run the harness failed to write, with the error.
    pub lost_artifacts: Vec<(PathBuf, String)>,
    /// The program powered the guest off: Some(whether QEMU then exited in time). A guest
    /// that powered off is not "dead"; one that did not get off is hung in its shutdown.
    pub powered_off: Option<bool>,
    /// The shutdown the program asked for was a restart (`reboot`): QEMU runs with
    /// `-no-reboot`, so a restarting guest exits too.
    pub restart: bool,
    /// A shutdown that did not end: the one a `poweroff`/`reboot` step asked for
    /// (`powered_off` is `Some(false)`), or the runner's power-off after the program and its
    /// cleanup (one VM per scenario; `powered_off` is `None`). A kernel that cannot shut down
    /// after a program is hung in its shutdown path as surely as one a step stopped.
    pub shutdown_hung: Option<ShutdownHang>,
    /// Where the guest disagrees with the devices QEMU has, after cleanup and settling.
    pub devices: Vec<oracle::devices::Disagreement>,
    /// kmemleak's report after cleanup: None when the kernel has no kmemleak or the program
    /// was not read (a crash, a dead guest); Err when reading it failed.
    pub kmemleak: Option<Result<String, String>>,
}

/// A power-off that did not end: where QEMU said the vCPUs were, and what the guest dumped.
#[derive(Debug, Clone, Default)]
pub struct ShutdownHang {
    /// The function of each vCPU's PSW, in CPU order (`?` where it is not known).
    pub cpus: Vec<String>,
    /// The vCPUs' PSWs described, then the console's blocked-task dump (often empty: the
    /// console is off from `device_shutdown` on).
    pub dump: String,
}

/// The FSM oracle's replay of a program's trace; the runner writes its text as `fsm.txt`.
#[derive(Debug, Clone)]
pub enum FsmReplay {
    /// The replay, and the map it was replayed against.
    Report(oracle::fsm::FsmReport, oracle::fsm::FsmMap),
    /// Neither the kernel's own sources nor the built-in maps know this kernel's FSM.
    NoMap { release: String },
}

impl FsmReplay {
    /// Replays `trace` with the map of the kernel's own driver sources when the build left
    /// them (a user's tree or patches may reorder the enums or change the jump table), else
    /// the built-in map of its version.
    pub fn new(trace: &[String], release: &str, own_map: Option<&oracle::fsm::FsmMap>) -> Self {
        let (major, minor) = version_of(release);
        match own_map.or_else(|| oracle::fsm::map_for_version(major, minor)) {
            Some(map) => FsmReplay::Report(
                oracle::fsm::check(trace.iter().map(String::as_str), map),
                map.clone(),
            ),
            None => FsmReplay::NoMap {
                release: release.to_string(),
            },
        }
    }

    /// The text of `fsm.txt`.
    pub fn text(&self) -> String {
        match self {
            FsmReplay::Report(r, _) => oracle::fsm::render(r),
            FsmReplay::NoMap { release } => format!("no FSM map for kernel {release}\n"),
        }
    }

    /// The program's FSM coverage points (none without a map).
    pub fn coverage(&self) -> crate::coverage::Coverage {
        match self {
            FsmReplay::Report(r, map) => crate::coverage::fsm::points(r, map),
            FsmReplay::NoMap { .. } => crate::coverage::Coverage::new(),
        }
    }

    /// The map's cells with a handler, the other side of the cells a program covers.
    pub fn reachable_cells(&self) -> Option<usize> {
        match self {
            FsmReplay::Report(_, map) => Some(crate::coverage::fsm::reachable_cells(map)),
            FsmReplay::NoMap { .. } => None,
        }
    }
}

/// The kernel version from the agent's `uname -r`, to pick the FSM map.
fn version_of(release: &str) -> (u32, u32) {
    let mut it = release
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty());
    let major = it.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    let minor = it.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    (major, minor)
}

pub fn judge(sc: &Scenario, records: &[StepRecord], ev: &Evidence, fsm: &FsmReplay) -> Verdict {
    judge_knowing(sc, records, ev, fsm, &[])
}

/// [`judge`], with the suite's known findings (`findings/known.toml`): a finding that matches
/// one, and whatever followed from it, does not fail the run.
pub fn judge_knowing(
    sc: &Scenario,
    records: &[StepRecord],
    ev: &Evidence,
    fsm: &FsmReplay,
    everywhere: &[KnownFinding],
) -> Verdict {
    let crashes = crash_reports(ev);
    let mut findings = crash_findings(sc, &crashes);
    findings.extend(stuck_findings(ev));
    findings.extend(step_findings(records, ev));
    findings.extend(liveness_findings(ev, &crashes));
    findings.extend(fsm_findings(sc, fsm));
    findings.extend(dmesg_findings(sc, ev));
    findings.extend(leak_findings(sc, ev, &crashes));
    findings.extend(kmemleak_findings(sc, ev, &crashes));
    findings.extend(ev.devices.iter().map(|d| {
        Finding::new(
            Subject::DeviceState {
                disagreement: d.clone(),
            },
            "the guest's devices after cleanup (css, ccw bus, mdevs) against the devices QEMU has",
        )
    }));
    findings.extend(
        ev.lost_artifacts
            .iter()
            .map(|(path, error)| evidence_lost(path.clone(), error.clone())),
    );
    mark_fallout(&mut findings);
    mark_known(&mut findings, everywhere);

    // A scenario that exposes a known kernel bug stays in the suite: when the bug shows (its
    // title matches a crash or any other finding), the run is that known finding, with the
    // findings that followed from it kept in the report; when it does not show, the run must
    // be clean like any other. A kernel report (oops, BUG, KASAN, lockdep) is not taken for
    // the consequence of a known finding that is no kernel report itself (an FSM violation, a
    // device left behind): the scenario's bug does not explain it, and accepting it hid a
    // lockdep lock-order report in `unmap_vs_reset_outstanding` on debug, printed before the
    // FSM violation it was passed as. A crash beside a known crash is its cascade.
    let known_re = sc
        .known_finding
        .as_ref()
        .and_then(|k| regex::Regex::new(&k.title).ok());
    let known = known_re.as_ref().and_then(|re| {
        let hit = findings.iter().find(|f| re.is_match(&f.title))?;
        let unexplained_crash = hit.kind != FindingKind::Crash
            && findings.iter().any(|f| {
                f.kind == FindingKind::Crash && f.known.is_none() && !re.is_match(&f.title)
            });
        (!unexplained_crash).then(|| hit.title.clone())
    });
    let fsm_violations = match fsm {
        FsmReplay::Report(r, _) => r.violations.len(),
        FsmReplay::NoMap { .. } => 0,
    };
    // Only suite-wide known findings (and what followed from them) left: the run is that
    // known finding.
    let settled = |f: &Finding| {
        f.known.is_some()
            || f.fallout_of
                .as_ref()
                .is_some_and(|c| findings.iter().any(|o| &o.key == c && o.known.is_some()))
    };
    let known = known.or_else(|| {
        (!findings.is_empty() && findings.iter().all(settled))
            .then(|| findings.iter().find(|f| f.known.is_some()))
            .flatten()
            .map(|f| f.title.clone())
    });
    Verdict {
        passed: findings.is_empty() || known.is_some(),
        findings,
        crashes,
        known_finding: known,
        guest_alive: ev.alive,
        steps: records.len(),
        fsm_violations,
    }
}

fn evidence_lost(path: PathBuf, error: String) -> Finding {
    Finding::new(
        Subject::EvidenceLost { path, error },
        "the run's evidence is incomplete: the harness could not write this artifact",
    )
}

/// Crashes: the console is the evidence that survives a dead agent; kmsg adds what the
/// console dropped. A report seen in both counts once, titled by the stream that has it
/// whole: the agent's kmsg reader can stop in the middle of an oops (the oopsing CPU was
/// the one it ran on), and its cut copy, titled without the function, would otherwise be a
/// second finding beside the console's (measured: a fuzz campaign's `NULL pointer
/// dereference` next to its `... in cio_start_key`, one crash).
fn crash_reports(ev: &Evidence) -> Vec<oracle::crash::CrashReport> {
    let mut crashes = oracle::crash::detect(&ev.console);
    for c in oracle::crash::detect(&ev.kmsg.join("\n")) {
        let same = |k: &oracle::crash::CrashReport| {
            k.title == c.title || (k.kind == c.kind && (k.corrupted || c.corrupted))
        };
        match crashes.iter_mut().find(|k| same(k)) {
            Some(k) if k.corrupted && !c.corrupted => *k = c,
            Some(_) => {}
            None => crashes.push(c),
        }
    }
    for e in ev.qmp_events.iter().filter(|e| e.name == "GUEST_PANICKED") {
        let r = oracle::crash::guest_panicked_report(&e.data.to_string());
        if !crashes.iter().any(|k| !k.alive) {
            crashes.push(r);
        }
    }
    crashes
}

fn crash_findings(sc: &Scenario, crashes: &[oracle::crash::CrashReport]) -> Vec<Finding> {
    let expected_re = match &sc.expect.crash {
        CrashExpect::None => None,
        CrashExpect::TitleRegex(r) => regex::Regex::new(r).ok(),
    };
    let mut out = Vec::new();
    let mut expected_seen = false;
    for c in crashes {
        if expected_re.as_ref().is_some_and(|re| re.is_match(&c.title)) {
            expected_seen = true;
        } else {
            out.push(Finding::new(
                Subject::Crash {
                    title: c.title.clone(),
                    key: oracle::crash::dedup_key(c),
                },
                c.text.lines().take(40).collect::<Vec<_>>().join("\n"),
            ));
        }
    }
    if let (CrashExpect::TitleRegex(r), false) = (&sc.expect.crash, expected_seen) {
        out.push(Finding::new(
            Subject::MissingCrash { pattern: r.clone() },
            "no such crash report",
        ));
    }
    out
}

/// A kernel thread left waiting: the hang no step shows.
fn stuck_findings(ev: &Evidence) -> Vec<Finding> {
    ev.stuck
        .iter()
        .map(|t| {
            Finding::new(
                Subject::StuckTask {
                    wchan: t.wchan.clone(),
                    comm: t.comm.clone(),
                },
                format!(
                    "{} (tid {}) in D state in {} at both end-of-run checks\n{}",
                    t.comm,
                    t.tid,
                    t.wchan,
                    ev.blocked_dump.as_deref().unwrap_or("")
                ),
            )
        })
        .collect()
}

/// Operations still blocked at the end, and outcomes the scenario did not allow.
fn step_findings(records: &[StepRecord], ev: &Evidence) -> Vec<Finding> {
    let mut out = Vec::new();
    for r in records {
        if matches!(r.outcome, Outcome::Blocked { .. }) && r.late.is_none() {
            out.push(Finding::new(
                Subject::Blocked {
                    op: r.op.name().to_string(),
                    actor: r.actor.clone(),
                    line: r.line,
                    phase: r.phase,
                },
                format!(
                    "{}\n{}",
                    r.summary(),
                    ev.blocked_dump.as_deref().unwrap_or("")
                ),
            ));
        } else if !r.matched {
            out.push(Finding::new(
                Subject::Step {
                    op: r.op.name().to_string(),
                    actor: r.actor.clone(),
                    line: r.line,
                    outcome: r.outcome.clone(),
                    late: r.late.clone(),
                    expected: r.expected.clone(),
                    deadline_ms: r.deadline_ms,
                },
                r.summary(),
            ));
        }
    }
    out
}

fn liveness_findings(ev: &Evidence, crashes: &[oracle::crash::CrashReport]) -> Vec<Finding> {
    // Told by a step (`poweroff`, `reboot`), or by the runner after the program: a guest that
    // did not get off is hung in its shutdown path, unless it crashed there.
    let told = match (ev.powered_off, &ev.shutdown_hung) {
        (Some(true), _) => return vec![],
        (Some(false), _) => Some(format!(
            "the guest was told to {} and QEMU did not exit",
            if ev.restart { "restart" } else { "power off" }
        )),
        (None, Some(_)) => Some(
            "after the program and its cleanup the runner powered the guest off (every \
             process killed, then reboot(RB_POWER_OFF)) and QEMU did not exit; the console \
             is off from device_shutdown on, so a dump may be missing"
                .to_string(),
        ),
        (None, None) => None,
    };
    if let (Some(what), true) = (told, crashes.is_empty()) {
        let hang = ev.shutdown_hung.clone().unwrap_or_default();
        return vec![Finding::new(
            Subject::PoweroffHung {
                restart: ev.restart,
                cpus: hang.cpus,
            },
            format!("{what}\n{}", hang.dump),
        )];
    }
    if ev.alive || !crashes.is_empty() {
        return vec![];
    }
    vec![Finding::new(
        Subject::GuestDead,
        format!(
            "no answer to a liveness request or no recent heartbeat\n{}",
            ev.blocked_dump.as_deref().unwrap_or("")
        ),
    )]
}

fn fsm_findings(sc: &Scenario, fsm: &FsmReplay) -> Vec<Finding> {
    let mut out = Vec::new();
    let report = match fsm {
        FsmReplay::Report(r, _) => r,
        FsmReplay::NoMap { release } => {
            if !sc.expect.fsm_final.is_empty() {
                out.push(Finding::new(
                    Subject::NoFsmMap {
                        release: release.clone(),
                    },
                    "",
                ));
            }
            return out;
        }
    };
    if !report.lost.is_empty() {
        let lost = report.lost_total();
        let count = lost.map_or_else(|| "an uncounted number of".to_string(), |n| n.to_string());
        out.push(Finding::new(
            Subject::TraceLost { lost },
            format!(
                "trace_pipe reported {count} lost events ({:?}); the agent's reader fell \
                 behind. fsm.txt replays what arrived. A larger buffer on the command line \
                 (trace_buf_size=) or fewer traced events make the run judgeable.",
                report.lost
            ),
        ));
    }
    let allowed: &[oracle::fsm::Rule] = match &sc.expect.fsm_violations {
        FsmViolationsExpect::None => &[],
        FsmViolationsExpect::Rules(r) => r,
    };
    for v in report
        .violations
        .iter()
        .filter(|v| !allowed.contains(&v.rule))
    {
        out.push(Finding::new(
            Subject::FsmViolation {
                rule: v.rule,
                schid: v.schid.clone(),
                ts: v.ts,
            },
            v.message.clone(),
        ));
    }
    for (schid, want) in &sc.expect.fsm_final {
        let got = report.final_states.get(schid);
        if got != Some(want) {
            out.push(Finding::new(
                Subject::FsmFinal {
                    schid: schid.clone(),
                    got: got.cloned(),
                    want: want.clone(),
                },
                "",
            ));
        }
    }
    out
}

/// dmesg expectations, over everything the kernel said.
fn dmesg_findings(sc: &Scenario, ev: &Evidence) -> Vec<Finding> {
    let all_log = format!("{}\n{}", ev.console, ev.kmsg.join("\n"));
    let lacks = sc
        .expect
        .dmesg_contains
        .iter()
        .filter(|s| !all_log.contains(s.as_str()))
        .map(|s| Subject::DmesgLacks { text: s.clone() });
    let has = sc
        .expect
        .dmesg_not_contains
        .iter()
        .filter(|s| all_log.contains(s.as_str()))
        .map(|s| Subject::DmesgHas { text: s.clone() });
    lacks.chain(has).map(|s| Finding::new(s, "")).collect()
}

/// Leaks are judged when the scenario asks, the guest is alive and did not crash (after a
/// crash the runner skips teardown and cleanup: what is left is the crash's).
fn leaks_judged(sc: &Scenario, ev: &Evidence, crashes: &[oracle::crash::CrashReport]) -> bool {
    sc.expect.leaks == LeaksExpect::None && ev.alive && crashes.is_empty()
}

/// Leaks left in sysfs and the agent: only meaningful when both snapshots exist.
fn leak_findings(
    sc: &Scenario,
    ev: &Evidence,
    crashes: &[oracle::crash::CrashReport],
) -> Vec<Finding> {
    if !leaks_judged(sc, ev, crashes) {
        return vec![];
    }
    let (Some(b), Some(a)) = (&ev.baseline, &ev.after) else {
        return vec![];
    };
    let unplugs = sc.unplugs();
    oracle::leaks::compare(b, a)
        .into_iter()
        // A scenario that hot-unplugs a device means its subchannel to go.
        .filter(|l| !(unplugs && matches!(l, oracle::leaks::Leak::SubchannelGone { .. })))
        .map(|l| {
            let detail = l.describe();
            Finding::new(Subject::Leak { leak: l }, detail)
        })
        .collect()
}

/// kmemleak: one finding per leaking call site (the report's title names the first frame
/// that is not an allocator), judged like the other leaks. A failed reading is lost evidence.
fn kmemleak_findings(
    sc: &Scenario,
    ev: &Evidence,
    crashes: &[oracle::crash::CrashReport],
) -> Vec<Finding> {
    if !leaks_judged(sc, ev, crashes) {
        return vec![];
    }
    let report = match &ev.kmemleak {
        None => return vec![],
        Some(Err(e)) => {
            return vec![Finding::new(
                Subject::EvidenceLost {
                    path: PathBuf::from(crate::rundir::Artifact::Kmemleak.file_name()),
                    error: e.clone(),
                },
                "",
            )]
        }
        Some(Ok(r)) => r,
    };
    kmemleak_report_findings(report)
}

/// The findings of a kmemleak report (as `kmemleak.txt` holds it): one per leaking call site.
/// Also for readings the fuzzer takes once for several programs.
pub fn kmemleak_report_findings(report: &str) -> Vec<Finding> {
    let mut out: Vec<Finding> = Vec::new();
    for c in oracle::crash::detect(report) {
        if c.kind != oracle::crash::CrashKind::MemoryLeak {
            continue;
        }
        let f = Finding::new(
            Subject::Leak {
                leak: oracle::leaks::Leak::Kmemleak {
                    title: c.title.clone(),
                    guilty: c.guilty.clone().unwrap_or_default(),
                },
            },
            &c.text,
        );
        if !out.iter().any(|o| o.key == f.key) {
            out.push(f);
        }
    }
    out
}

/// After a crash, whatever is left blocked, leaked or dead is its doing (the oopsing task held
/// the fd, the mutex, the mdev); after a hang, what teardown and cleanup could not release is
/// the hang's. Those findings are listed under the crash or hang, not as bugs of their own.
/// So are the steps the runner abandoned when the kernel crashed under them.
/// FSM violations stay primary: they may be what led to the crash.
pub(crate) fn mark_fallout(findings: &mut [Finding]) {
    let cleanup_phase = |f: &Finding| {
        matches!(
            f.subject,
            Subject::Blocked {
                phase: Phase::Teardown | Phase::Check,
                ..
            }
        )
    };
    let cause = findings
        .iter()
        .find(|f| f.kind == FindingKind::Crash)
        .or_else(|| {
            findings
                .iter()
                .find(|f| f.kind == FindingKind::Hang && !cleanup_phase(f))
        })
        .or_else(|| findings.iter().find(|f| f.kind == FindingKind::Hang))
        .map(|f| (f.key.clone(), f.kind));
    let Some((cause, cause_kind)) = cause else {
        return;
    };
    for f in findings.iter_mut().filter(|f| f.key != cause) {
        let fallout = match f.kind {
            FindingKind::Leak | FindingKind::GuestDead | FindingKind::DeviceState => true,
            FindingKind::Hang => cause_kind == FindingKind::Crash || cleanup_phase(f),
            FindingKind::Step => {
                cause_kind == FindingKind::Crash
                    && matches!(&f.subject, Subject::Step {
                        outcome: Outcome::Failed { message }, ..
                    } if message == super::steps::ABANDONED)
            }
            _ => false,
        };
        if fallout {
            f.fallout_of = Some(cause.clone());
        }
    }
}

/// Marks the findings that match a suite-wide known finding.
fn mark_known(findings: &mut [Finding], everywhere: &[KnownFinding]) {
    let patterns: Vec<(regex::Regex, &str)> = everywhere
        .iter()
        .filter_map(|k| Some((regex::Regex::new(&k.title).ok()?, k.title.as_str())))
        .collect();
    for f in findings.iter_mut() {
        if let Some((_, t)) = patterns.iter().find(|(re, _)| re.is_match(&f.title)) {
            f.known = Some(t.to_string());
        }
    }
}

#[cfg(test)]
#[path = "verdict_tests.rs"]
mod tests;
