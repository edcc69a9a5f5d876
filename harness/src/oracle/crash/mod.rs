//! Crash reports in a kernel console log.
//!
//! [`detect`] splits a log into reports using the table in `patterns.rs`; each report gets
//! a syzkaller-style title, a kind, the guilty function (the first frame that is not
//! reporting, locking or dispatch machinery), and whether the kernel survived it.

pub(crate) mod frames;
mod patterns;

pub use frames::{is_generic, Frame};

use crate::oracle::logline::{self, LogLine};
use patterns::{Pattern, Role, CONTINUATION, PANIC_CONSEQUENCE, PATTERNS, RULE, TERMINATOR};
use regex::Regex;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::LazyLock;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CrashKind {
    /// s390 program check in kernel mode other than a page fault (`illegal operation`, ...).
    ProgramCheck,
    /// Kernel page fault (`Unable to handle kernel pointer dereference` / `Oops:`).
    Oops,
    /// `kernel BUG at` / s390 `monitor event`.
    Bug,
    Warning,
    Kasan,
    Kfence,
    /// KMSAN: a use of uninitialized memory (`BUG: KMSAN: uninit-value in f`).
    Kmsan,
    Lockdep,
    SleepInAtomic,
    SchedAtomic,
    Spinlock,
    HungTask,
    RcuStall,
    SoftLockup,
    ListCorruption,
    Refcount,
    DebugObjects,
    Ubsan,
    /// FORTIFY_SOURCE: a string or memory function caught overflowing its object.
    Fortify,
    /// kmemleak's `unreferenced object`.
    MemoryLeak,
    /// SLUB's object checks (`BUG kmalloc-64 (Not tainted): Poison overwritten`).
    SlabCorruption,
    Panic,
    /// QMP `GUEST_PANICKED`, added by the runner: not in the console.
    GuestPanicked,
    /// `User process fault:` — a user program faulted; the kernel is fine.
    UserFault,
}

impl CrashKind {
    pub fn as_str(self) -> &'static str {
        use CrashKind::*;
        match self {
            ProgramCheck => "program_check",
            Oops => "oops",
            Bug => "bug",
            Warning => "warning",
            Kasan => "kasan",
            Kfence => "kfence",
            Kmsan => "kmsan",
            Lockdep => "lockdep",
            SleepInAtomic => "sleep_in_atomic",
            SchedAtomic => "sched_atomic",
            Spinlock => "spinlock",
            HungTask => "hung_task",
            RcuStall => "rcu_stall",
            SoftLockup => "soft_lockup",
            ListCorruption => "list_corruption",
            Refcount => "refcount",
            DebugObjects => "debug_objects",
            Ubsan => "ubsan",
            Fortify => "fortify",
            MemoryLeak => "memory_leak",
            SlabCorruption => "slab_corruption",
            Panic => "panic",
            GuestPanicked => "guest_panicked",
            UserFault => "user_fault",
        }
    }
}

impl std::fmt::Display for CrashKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CrashReport {
    pub title: String,
    pub kind: CrashKind,
    pub guilty: Option<String>,
    /// The report's lines, prefixes stripped.
    pub text: String,
    /// Whether the kernel kept running after it: false once a panic follows (or it is one).
    pub alive: bool,
    /// 1-based line of the input where the report starts.
    pub start_line: usize,
    pub frames: Vec<Frame>,
    /// The report was cut short (the log ends before its stack, or no frame could be
    /// read): its title names the kind only and must not be trusted as a dedup key.
    /// (Defaults: result.json files written before these fields existed still read.)
    #[serde(default)]
    pub corrupted: bool,
    /// 1-based line of the input where the report ends (inclusive).
    #[serde(default)]
    pub end_line: usize,
}

/// Lines a prefix (`kernel BUG at`, `list_add corruption`) waits for its die/WARNING line.
const JOIN_WINDOW: usize = 12;
/// Non-report lines after a report's stack that end it.
const QUIET_LINES: usize = 3;
/// A panic this close to the end of the previous report is its consequence even when the
/// reason does not say so.
const PANIC_GAP: usize = 3;
/// Upper bound of a report's length, against runaway splats.
const MAX_LINES: usize = 400;

struct Building {
    pattern: &'static Pattern,
    /// Captures of the header lines and body regexes, by name.
    captures: BTreeMap<String, String>,
    /// Functions named by the report's headers (`at: f`, `in f`), preferred over the stack.
    hints: Vec<String>,
    start_line: usize,
    lines: Vec<String>,
    joinable_until: Option<usize>,
    seen_frame: bool,
    quiet: usize,
    last_break_pending: bool,
    alive: bool,
    last_line: usize,
    /// The printk caller of the header: with caller ids, lines of other callers are other
    /// CPUs' or tasks' output interleaved with this report.
    caller: Option<String>,
    /// Whether the report ended because the log did.
    at_eof: bool,
    /// Whether a terminator (`---[ end trace`, the KASAN rule) closed it.
    terminated: bool,
}

impl Building {
    fn new(pattern: &'static Pattern, line: &LogLine, start_line: usize) -> Self {
        let mut b = Building {
            pattern,
            captures: BTreeMap::new(),
            hints: Vec::new(),
            start_line,
            lines: Vec::new(),
            joinable_until: (pattern.role == Role::Prefix).then_some(line.number + JOIN_WINDOW),
            seen_frame: false,
            quiet: 0,
            last_break_pending: false,
            alive: pattern.role != Role::Panic && !pattern.fatal,
            last_line: line.number,
            caller: line.caller.clone(),
            at_eof: false,
            terminated: false,
        };
        b.absorb_header(pattern, header_text(&line.msg));
        b.lines.push(line.msg.clone());
        b
    }

    fn absorb_header(&mut self, pattern: &Pattern, msg: &str) {
        if let Some(c) = pattern.header.captures(msg) {
            for name in pattern.header.capture_names().flatten() {
                if let Some(m) = c.name(name) {
                    self.captures
                        .entry(name.to_owned())
                        .or_insert_with(|| m.as_str().to_owned());
                    if name == "func" || name == "prog" {
                        self.hints.push(m.as_str().to_owned());
                    }
                }
            }
        }
    }

    fn push(&mut self, line: &LogLine) {
        let text = header_text(&line.msg);
        for body in &self.pattern.body {
            if let Some(c) = body.captures(text) {
                for name in body.capture_names().flatten() {
                    if let Some(m) = c.name(name) {
                        if !self.captures.contains_key(name) {
                            self.captures.insert(name.to_owned(), m.as_str().to_owned());
                            if name == "func" {
                                self.hints.push(m.as_str().to_owned());
                            }
                        }
                    }
                }
            }
        }
        self.lines.push(line.msg.clone());
        self.last_line = line.number;
    }

    /// Whether `line` belongs to this report's output rather than to another CPU's or task's.
    fn owns(&self, line: &LogLine) -> bool {
        match (&self.caller, &line.caller) {
            (Some(a), Some(b)) => a == b,
            _ => true,
        }
    }

    fn finish(self) -> CrashReport {
        // `Preemption disabled at:` names where preemption was turned off, on the next line
        // in frame form: context for the reader, not a frame of the report's stack.
        let frames: Vec<Frame> = self
            .lines
            .iter()
            .enumerate()
            .filter(|(i, _)| {
                i.checked_sub(1)
                    .and_then(|p| self.lines.get(p))
                    .is_none_or(|p| !p.trim_end().ends_with("disabled at:"))
            })
            .filter_map(|(_, l)| frames::parse_frame(l))
            .collect();
        let fault = self
            .lines
            .iter()
            .find_map(|l| frames::parse_fault_location(l));
        let pattern = self.pattern;
        let useful = |f: &Frame| {
            f.is_symbol() && !is_generic(&f.func) && !frames::matches_any(pattern.skip, &f.func)
        };
        let guilty = if pattern.kind == CrashKind::UserFault {
            self.hints.first().cloned()
        } else {
            let hints: Vec<Frame> = self
                .hints
                .iter()
                .map(|h| frames::parse_symbol(h, None, None, false))
                .collect();
            // A call through a NULL pointer (s390 PSW 0x0/0x2, x86 RIP 0, arm64 pc 0) faults
            // outside any function: the culprit is the caller, which the last breaking
            // event (s390), the link register (arm64) or the return frame names.
            let location: Vec<Frame> = match &fault {
                Some(f) if f.null_call => frames::caller_of_null_call(&self.lines)
                    .into_iter()
                    .collect(),
                Some(f) => vec![f.frame.clone()],
                None => Vec::new(),
            };
            hints
                .iter()
                .chain(location.iter())
                .chain(frames.iter())
                .find(|f| useful(f))
                .map(|f| base_name(&f.func))
                // Only machinery on the stack (a WARN in the fault handler itself): the
                // function the header names is still better than no title at all, unless
                // it is the checker a prefix row announced (`refcount_warn_saturate` after
                // `refcount_t: underflow`): that names no culprit.
                .or_else(|| {
                    hints
                        .iter()
                        .filter(|_| pattern.role != Role::Prefix)
                        .find(|h| h.is_symbol())
                        .map(|h| base_name(&h.func))
                })
                .or_else(|| {
                    frames::work_function(&self.lines)
                        .filter(|f| useful(f))
                        .map(|f| base_name(&f.func))
                })
        };
        let needs_stack = !matches!(
            pattern.kind,
            CrashKind::Panic | CrashKind::UserFault | CrashKind::GuestPanicked
        ) && pattern.title.contains("{guilty}");
        // The log ended before the report showed where it happened: what is known of it is
        // its kind (a report that never prints a stack, like lockdep's "lock held when
        // returning to user space", is complete without one).
        let cut_short = self.at_eof && !self.terminated && frames.is_empty() && fault.is_none();
        let corrupted = needs_stack && cut_short && guilty.is_none();
        let title = render_title(pattern.title, &self.captures, guilty.as_deref());
        // Drop trailing lines that were only waited on to see whether the report went on.
        let mut lines = self.lines;
        let keep = lines.len().saturating_sub(self.quiet).max(1);
        lines.truncate(keep);
        CrashReport {
            title,
            kind: pattern.kind,
            guilty,
            text: lines.join("\n"),
            alive: self.alive,
            start_line: self.start_line,
            frames,
            corrupted,
            end_line: self.last_line,
        }
    }
}

/// A function's name without the suffixes of compiler clones (`.isra.0`, `.constprop.0`,
/// `.cold`, `.part.0`): the same function in every build, as syzkaller titles it.
fn base_name(func: &str) -> String {
    func.split('.').next().unwrap_or(func).to_owned()
}

static TEMPLATE_VAR: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\{(\w+)\}").expect("static regex"));

fn render_title(
    template: &str,
    captures: &BTreeMap<String, String>,
    guilty: Option<&str>,
) -> String {
    let template = match guilty {
        Some(_) => template.to_owned(),
        None => template.replace(" in {guilty}", ""),
    };
    TEMPLATE_VAR
        .replace_all(&template, |c: &regex::Captures<'_>| match &c[1] {
            "guilty" => guilty.unwrap_or_default().to_owned(),
            // Page 0 holds no kernel object: a fault there is a NULL (+ small offset) access.
            "fault" => match captures
                .get("fault_addr")
                .and_then(|a| u64::from_str_radix(a.trim_start_matches("0x"), 16).ok())
            {
                Some(a) if a < 0x1000 => "NULL pointer dereference".to_owned(),
                _ => "paging request".to_owned(),
            },
            name => captures.get(name).cloned().unwrap_or_default(),
        })
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// A message without the indentation a paste or the kernel put in front of it: headers are
/// matched on this.
fn header_text(msg: &str) -> &str {
    let t = msg.trim_start();
    match LEADING_RULE.find(t) {
        Some(m) if m.end() < t.len() => &t[m.end()..],
        _ => t,
    }
}

fn match_pattern(msg: &str) -> Option<&'static Pattern> {
    let text = header_text(msg);
    PATTERNS
        .iter()
        .find(|p| p.header.is_match(text))
        .or_else(|| {
            // A log reflowed by a web page or mail client can put the rule that precedes a
            // header on the header's line.
            let rest = LEADING_RULE.find(text).map(|m| &text[m.end()..])?;
            PATTERNS.iter().find(|p| p.header.is_match(rest))
        })
}

static LEADING_RULE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[=-]{20,}\s+").expect("static regex"));

/// Whether a line would open a report: line-joining must not glue such a line onto the
/// line before it.
pub(crate) fn starts_report(msg: &str) -> bool {
    match_pattern(msg).is_some() || CUT_HERE.is_match(header_text(msg))
}

/// Lines before a bare `Oops:` that describe its fault (x86 before 4.x).
static FAULT_CONTEXT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^(?:(?:IP|RIP|EIP): |PGD |\*pde|\*pdpt|#PF: )").expect("static regex")
});
const FAULT_CONTEXT_LINES: usize = 3;

static CUT_HERE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^-+\[ cut here \]-+\s*$").expect("static regex"));

/// All crash reports in `log`, in order. Never fails: unknown text is simply not a report.
pub fn detect(log: &str) -> Vec<CrashReport> {
    detect_lines(&logline::split(log))
}

/// The reports of `log` from its 1-based line `from` on, as if the log began there.
pub fn detect_from(log: &str, from: usize) -> Vec<CrashReport> {
    let lines: Vec<LogLine> = logline::split(log)
        .into_iter()
        .filter(|l| l.number >= from)
        .collect();
    detect_lines(&lines)
}

fn detect_lines(lines: &[LogLine]) -> Vec<CrashReport> {
    let mut done: Vec<Building> = Vec::new();
    let mut cur: Option<Building> = None;
    // A `cut here` line opens no report but is where the next WARN/BUG report starts.
    let mut cut_here: Option<usize> = None;
    // The last lines outside any report, for context a report's first line refers back to.
    let mut recent: Vec<&LogLine> = Vec::new();

    for line in lines {
        if !line.kernel {
            // User space writing to the console: kernel reports never contain it, and it
            // does not end the report it interrupts.
            continue;
        }
        let text = header_text(&line.msg);
        if CUT_HERE.is_match(text) {
            cut_here = Some(line.number);
            continue;
        }
        let foreign = cur.as_ref().is_some_and(|b| !b.owns(line));
        if let Some(p) = match_pattern(text) {
            if foreign && p.role != Role::Panic && p.role != Role::Main {
                // Another CPU's continuation of its own report: not ours, and too little
                // to open one.
                continue;
            }
            let joined = match (&mut cur, p.role) {
                (Some(b), Role::Joinable | Role::Prefix)
                    if b.joinable_until.is_some_and(|until| line.number <= until) =>
                {
                    // The generic line after a prefix: keep the prefix's title, learn the
                    // header's function, and keep waiting if this line is a prefix too.
                    b.absorb_header(p, text);
                    b.push(line);
                    if p.role == Role::Joinable {
                        b.joinable_until = None;
                    }
                    true
                }
                (_, Role::Panic) => {
                    let reason = p
                        .header
                        .captures(text)
                        .and_then(|c| c.name("reason").map(|m| m.as_str().to_owned()))
                        .unwrap_or_default();
                    let target = match cur.as_mut() {
                        Some(b) => Some(b),
                        None => done.last_mut(),
                    };
                    match target {
                        Some(b)
                            if PANIC_CONSEQUENCE.is_match(&reason)
                                || line.number <= b.last_line + PANIC_GAP =>
                        {
                            b.alive = false;
                            b.push(line);
                            b.quiet = 0;
                            if cur.is_none() {
                                // Re-open the finished report so the panic's stack joins it.
                                cur = done.pop();
                            }
                            true
                        }
                        _ => false,
                    }
                }
                _ => false,
            };
            if !joined {
                if let Some(b) = cur.take() {
                    done.push(b);
                }
                let start = match cut_here.take() {
                    Some(n) if n + 2 >= line.number => n,
                    _ => line.number,
                };
                let mut b = Building::new(p, line, start);
                if p.role == Role::Joinable {
                    // Old x86 prints the faulting `IP:` before `Oops:`; when the line that
                    // named the fault is lost, that context still belongs to the report.
                    let context: Vec<&LogLine> = recent
                        .iter()
                        .copied()
                        .filter(|l| FAULT_CONTEXT.is_match(header_text(&l.msg)))
                        .collect();
                    if let Some(first) = context.first() {
                        b.start_line = b.start_line.min(first.number);
                        let mut lines: Vec<String> =
                            context.iter().map(|l| l.msg.clone()).collect();
                        lines.append(&mut b.lines);
                        b.lines = lines;
                    }
                }
                cur = Some(b);
            }
            recent.clear();
            continue;
        }
        if cur.is_none() {
            if recent.len() == FAULT_CONTEXT_LINES {
                recent.remove(0);
            }
            recent.push(line);
        }
        if foreign {
            continue;
        }
        let Some(b) = cur.as_mut() else { continue };
        b.push(line);
        if TERMINATOR.is_match(text)
            || (RULE.is_match(text) && b.lines.len() > 3)
            || b.lines.len() >= MAX_LINES
        {
            b.quiet = 0;
            b.terminated = true;
            done.extend(cur.take());
            continue;
        }
        if frames::parse_frame(&line.msg).is_some() {
            b.seen_frame = true;
            b.quiet = 0;
            if b.last_break_pending {
                b.last_break_pending = false;
                // s390 ends every register dump with the last breaking event: the report
                // is complete unless a panic follows right after (handled above).
                done.extend(cur.take());
            }
            continue;
        }
        if let Some(rest) = text.strip_prefix("Last Breaking-Event-Address:") {
            if frames::parse_frame(rest).is_some() {
                // Since 5.16 on one line with its frame: the dump is complete.
                b.quiet = 0;
                done.extend(cur.take());
            } else {
                b.last_break_pending = true;
            }
            continue;
        }
        if CONTINUATION.is_match(&line.msg) || CONTINUATION.is_match(text) {
            b.quiet = 0;
            continue;
        }
        b.quiet += 1;
        if b.seen_frame && b.quiet >= QUIET_LINES {
            done.extend(cur.take());
        }
    }
    if let Some(mut b) = cur {
        b.at_eof = true;
        done.push(b);
    }
    done.into_iter().map(Building::finish).collect()
}

/// The report the runner adds when QMP says `GUEST_PANICKED` (the console may show nothing:
/// on s390 a dying guest enters a disabled wait, and the SCLP console may already be off).
pub fn guest_panicked_report(details: &str) -> CrashReport {
    CrashReport {
        title: "guest panicked (QMP GUEST_PANICKED)".to_owned(),
        kind: CrashKind::GuestPanicked,
        guilty: None,
        text: details.to_owned(),
        alive: false,
        start_line: 0,
        frames: Vec::new(),
        corrupted: false,
        end_line: 0,
    }
}

static HEXNUM: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\b(?:0x)?[0-9a-fA-F]{8,}\b|\b0x[0-9a-fA-F]+\b").expect("static regex")
});
static OFFSET: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\+0x[0-9a-f]+/0x[0-9a-f]+").expect("static regex"));
static NUMBER: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\d+").expect("static regex"));

/// A key equal for two reports of the same bug: the kind and the title with addresses,
/// offsets, line numbers and CPU/PID/task numbers replaced by placeholders.
pub fn dedup_key(report: &CrashReport) -> String {
    let t = OFFSET.replace_all(&report.title, "");
    let t = HEXNUM.replace_all(&t, "ADDR");
    let t = NUMBER.replace_all(&t, "N");
    format!("{}: {}", report.kind, t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dedup_key_ignores_numbers() {
        let mut a = guest_panicked_report("");
        a.kind = CrashKind::Panic;
        a.title = "kernel panic: Attempted to kill init! exitcode=0x0000000b".into();
        let mut b = a.clone();
        b.title = "kernel panic: Attempted to kill init! exitcode=0x00000009".into();
        assert_eq!(dedup_key(&a), dedup_key(&b));
        a.title = "WARNING in f+0x1/0x20 at CPU: 1 PID: 53".into();
        b.title = "WARNING in f+0x8/0x20 at CPU: 0 PID: 7".into();
        assert_eq!(dedup_key(&a), dedup_key(&b));
    }

    // The NULL-call rule on each architecture's report form. The lines follow the kernel's
    // formats (arch/s390/kernel/dumpstack.c, arch/arm64/kernel/process.c, arch/x86 dumpstack).
    #[test]
    fn call_through_null_blames_the_caller() {
        let s390 = "\
Unable to handle kernel pointer dereference in virtual kernel address space
Failing address: 0000000000000000 TEID: 0000000000000803
Oops: 0004 ilc:1 [#1] SMP
Krnl PSW : 0704c00180000000 0000000000000000 (0x0)
Call Trace:
 [<0000000000000000>] 0x0
 [<000003ffe03f5a2c>] css_evaluate_subchannel+0x74/0x1a8
Last Breaking-Event-Address:
 [<000003ff8023a1b4>] vfio_ccw_sch_io_todo+0x64/0x1a8 [vfio_ccw]
";
        let r = &detect(s390)[0];
        assert_eq!(r.guilty.as_deref(), Some("vfio_ccw_sch_io_todo"), "{r:?}");
        let arm64 = "\
Unable to handle kernel NULL pointer dereference at virtual address 0000000000000000
Internal error: Oops: 0000000086000004 [#1] PREEMPT SMP
pc : 0x0
lr : vfio_pci_core_ioctl+0x1c4/0x8a0 [vfio_pci_core]
Call trace:
 0x0
 vfio_device_fops_unl_ioctl+0x4c/0x80 [vfio]
";
        let r = &detect(arm64)[0];
        assert_eq!(
            r.title,
            "BUG: unable to handle kernel NULL pointer dereference in vfio_pci_core_ioctl"
        );
        let x86 = "\
BUG: kernel NULL pointer dereference, address: 0000000000000000
#PF: supervisor instruction fetch in kernel mode
Oops: 0010 [#1] PREEMPT SMP NOPTI
RIP: 0010:0x0
Call Trace:
 <TASK>
 ? __die+0x23/0x70
 vfio_iommu_type1_ioctl+0x2a1/0x1010 [vfio_iommu_type1]
 __x64_sys_ioctl+0x97/0xd0
";
        let r = &detect(x86)[0];
        assert_eq!(r.guilty.as_deref(), Some("vfio_iommu_type1_ioctl"), "{r:?}");
    }

    #[test]
    fn report_cut_short_is_corrupted() {
        let r = &detect("illegal operation: 0001 ilc:1 [#1] SMP\nModules linked in: vfio_ccw\n")[0];
        assert!(r.corrupted);
        assert_eq!(r.title, "illegal operation");
        let whole = &detect(include_str!(
            "../../../tests/data/reports/seed-5.15-rc1-vfio-ccw-teardown-oops.log"
        ))[0];
        assert!(!whole.corrupted);
    }

    #[test]
    fn caller_ids_separate_interleaved_reports() {
        let log = "\
[   10.000001][ T100] WARNING: CPU: 0 PID: 100 at drivers/vfio/vfio_main.c:1 vfio_a+0x1/0x10
[   10.000002][ T200] Call Trace:
[   10.000003][ T100] Call Trace:
[   10.000004][ T200]  other_task_function+0x1/0x10
[   10.000005][ T100]  __warn+0x1/0x10
[   10.000006][ T100]  vfio_a+0x1/0x10
";
        let r = detect(log);
        assert_eq!(r.len(), 1);
        assert!(!r[0].text.contains("other_task_function"), "{}", r[0].text);
        assert!(r[0].frames.iter().all(|f| f.func != "other_task_function"));
    }

    #[test]
    fn title_without_guilty_drops_in() {
        let caps = BTreeMap::new();
        assert_eq!(render_title("WARNING in {guilty}", &caps, None), "WARNING");
    }
}
