//! The crash patterns: one row per kind of kernel report. Adding a pattern means adding a
//! row here and a real log with its `.expected` sidecar under `tests/data/reports/`.
//!
//! Titles follow syzkaller's (`WARNING in f`, `KASAN: slab-use-after-free Read in f`,
//! `possible deadlock in f`, `INFO: task hung in f`, ...). s390-specific titles:
//! - a program check without a fault address (`illegal operation: 0001 ilc:1 [#1]`) is titled
//!   by its name: `illegal operation in f`, `specification exception in f`, ...;
//! - `Unable to handle kernel pointer dereference ...` + `Oops:` is titled like x86's
//!   `BUG: unable to handle kernel NULL pointer dereference in f` when the failing address
//!   lies in page 0, else `BUG: unable to handle kernel paging request in f`;
//! - `kernel BUG at` + `monitor event:` (s390's BUG()) is `kernel BUG in f`;
//! - `User process fault: ... in prog[...]` is `user process fault in prog`.

use super::CrashKind;
use regex::Regex;
use std::sync::LazyLock;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// Starts a report on its own.
    Main,
    /// Starts a report and may absorb the die/WARNING line that follows it (the prefix
    /// names the bug better than the generic line after it).
    Prefix,
    /// The generic line that follows a prefix (`Oops:`, `monitor event:`, `WARNING: CPU:`).
    Joinable,
    /// `Kernel panic - not syncing`: belongs to the report before it when it is its consequence.
    Panic,
}

pub(crate) struct Pattern {
    pub kind: CrashKind,
    pub role: Role,
    pub header: Regex,
    /// `{guilty}` and named captures of `header`/`body`; ` in {guilty}` is dropped when no
    /// guilty function is known. `{fault}` is derived from `fault_addr` (see module docs).
    pub title: &'static str,
    /// Searched in the report's lines after the header, first match wins per regex.
    pub body: Vec<Regex>,
}

fn re(s: &str) -> Regex {
    Regex::new(s).expect("static crash pattern")
}

fn row(kind: CrashKind, role: Role, header: &str, title: &'static str, body: &[&str]) -> Pattern {
    Pattern {
        kind,
        role,
        header: re(header),
        title,
        body: body.iter().map(|b| re(b)).collect(),
    }
}

const LOCK_AT: &str = r", at: (?P<func>[A-Za-z_][\w.]*)\+0x";

/// Ordered: the first matching row wins, so specific rows precede generic ones.
pub(crate) static PATTERNS: LazyLock<Vec<Pattern>> = LazyLock::new(|| {
    use CrashKind::*;
    use Role::*;
    vec![
        row(
            Kasan,
            Main,
            r"^BUG: KASAN: (?P<bugtype>[\w-]+) in (?P<func>[A-Za-z_][\w.]*)",
            "KASAN: {bugtype} {access} in {guilty}",
            &[r"^(?P<access>Read|Write) of size"],
        ),
        row(
            Kfence,
            Main,
            r"^BUG: KFENCE: (?P<bugtype>[\w-]+(?: read| write)?) in (?P<func>[A-Za-z_][\w.]*)",
            "KFENCE: {bugtype} in {guilty}",
            &[],
        ),
        row(
            Lockdep,
            Main,
            r"^WARNING: possible (?:circular|recursive) locking dependency detected|^WARNING: possible recursive locking detected",
            "possible deadlock in {guilty}",
            &[LOCK_AT],
        ),
        row(
            Lockdep,
            Main,
            r"^WARNING: inconsistent lock state",
            "inconsistent lock state in {guilty}",
            &[],
        ),
        row(
            Lockdep,
            Main,
            r"^WARNING: held lock freed!",
            "BUG: held lock freed in {guilty}",
            &[],
        ),
        row(
            Lockdep,
            Main,
            r"^WARNING: (?P<what>bad unlock balance detected|possible irq lock inversion dependency detected|suspicious RCU usage|lock held when returning to user space|[A-Z]+-safe -> [A-Z]+-unsafe lock order detected)",
            "WARNING: {what} in {guilty}",
            &[],
        ),
        row(
            SleepInAtomic,
            Main,
            r"^BUG: sleeping function called from invalid context at (?P<loc>\S+)",
            "BUG: sleeping function called from invalid context in {guilty}",
            &[],
        ),
        row(
            SchedAtomic,
            Main,
            r"^BUG: scheduling while atomic: ",
            "BUG: scheduling while atomic in {guilty}",
            &[],
        ),
        row(
            Spinlock,
            Main,
            r"^BUG: spinlock (?P<what>lockup suspected|recursion|already unlocked|wrong owner|wrong CPU|bad magic)",
            "BUG: spinlock {what} in {guilty}",
            &[],
        ),
        row(
            HungTask,
            Main,
            r"^INFO: task (?P<comm>.+):(?P<pid>\d+) blocked for more than \d+ seconds",
            "INFO: task hung in {guilty}",
            &[],
        ),
        row(
            RcuStall,
            Main,
            r"^rcu: INFO: \w+ (?:self-)?detected stalls?",
            "INFO: rcu detected stall in {guilty}",
            &[],
        ),
        row(
            SoftLockup,
            Main,
            r"^watchdog: BUG: soft lockup - CPU#\d+ stuck for \d+s!",
            "BUG: soft lockup in {guilty}",
            &[],
        ),
        row(
            Ubsan,
            Main,
            r"^UBSAN: (?P<what>[\w-]+(?: [\w-]+)*) in (?P<loc>\S+)",
            "UBSAN: {what} in {guilty}",
            &[],
        ),
        // Messages printed just before the WARN/BUG they explain.
        row(
            ListCorruption,
            Prefix,
            r"^list_(?P<op>add|del) corruption",
            "BUG: corrupted list in {guilty}",
            &[],
        ),
        row(
            Refcount,
            Prefix,
            r"^refcount_t: (?P<what>.*?)\.?$",
            "refcount bug in {guilty}",
            &[],
        ),
        // mm/usercopy.c: the message, then BUG() (`kernel BUG at mm/usercopy.c`).
        row(
            Bug,
            Prefix,
            r"^usercopy: Kernel memory (?P<what>exposure|overwrite) attempt detected",
            "BUG: bad usercopy in {guilty}",
            &[],
        ),
        row(
            DebugObjects,
            Prefix,
            r"^ODEBUG: (?P<op>\w+)",
            "WARNING: ODEBUG bug in {guilty}",
            &[],
        ),
        row(
            Oops,
            Prefix,
            r"^Unable to handle kernel (?:pointer dereference in virtual kernel|paging request in virtual user) address space",
            "BUG: unable to handle kernel {fault} in {guilty}",
            &[r"^Failing address: (?P<fault_addr>[0-9a-f]+)"],
        ),
        row(
            Bug,
            Prefix,
            r"^kernel BUG at (?P<loc>\S+?)!?$",
            "kernel BUG in {guilty}",
            &[],
        ),
        row(
            Oops,
            Main,
            r"^BUG: kernel NULL pointer dereference, address:",
            "BUG: unable to handle kernel NULL pointer dereference in {guilty}",
            &[],
        ),
        row(
            Oops,
            Main,
            r"^BUG: unable to handle page fault for address:",
            "BUG: unable to handle kernel paging request in {guilty}",
            &[],
        ),
        // Generic lines that a prefix may have announced.
        row(
            Warning,
            Joinable,
            r"^WARNING: CPU: \d+ PID: \d+ at (?:(?P<loc>\S+:\d+) )?(?P<func>[A-Za-z_][\w.]*)\+0x",
            "WARNING in {guilty}",
            &[],
        ),
        row(
            Warning,
            Joinable,
            r"^WARNING: (?P<loc>\S+:\d+) at (?P<func>[A-Za-z_][\w.]*)\+0x[0-9a-f]+/0x[0-9a-f]+, CPU#\d+: ",
            "WARNING in {guilty}",
            &[],
        ),
        row(
            Oops,
            Joinable,
            r"^Oops: [0-9a-f]{4} ilc:\d \[#\d+\]",
            "Oops in {guilty}",
            &[],
        ),
        row(
            Bug,
            Joinable,
            r"^monitor event: [0-9a-f]{4} ilc:\d \[#\d+\]",
            "kernel BUG in {guilty}",
            &[],
        ),
        row(
            ProgramCheck,
            Joinable,
            r"^(?P<name>[a-zA-Z][a-zA-Z -]*[a-z]): [0-9a-f]{4} ilc:\d \[#\d+\]",
            "{name} in {guilty}",
            &[],
        ),
        row(
            CrashKind::Panic,
            Role::Panic,
            r"^Kernel panic - not syncing: (?P<reason>.*?)\s*$",
            "kernel panic: {reason}",
            &[],
        ),
        row(
            UserFault,
            Main,
            r"^User process fault: interruption code [0-9a-f]{4} ilc:\d+\s*(?:in (?P<prog>[^\[\s]+))?",
            "user process fault in {guilty}",
            &[],
        ),
    ]
});

/// Panic reasons that are the consequence of the report printed before them.
pub(crate) static PANIC_CONSEQUENCE: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)fatal exception|panic_on_warn|panic_on_oops|hung_task: blocked tasks|softlockup: hung tasks|rcu stall|attempted to kill init|panic_on_taint|kasan|kfence|lockdep|corrupted",
    )
});

/// Lines that close a report (inclusive).
pub(crate) static TERMINATOR: LazyLock<Regex> =
    LazyLock::new(|| re(r"^---\[ end (?:trace [0-9a-f]+|Kernel panic - not syncing.*) \]---"));

/// The `====` rule that closes KASAN and KFENCE reports.
pub(crate) static RULE: LazyLock<Regex> = LazyLock::new(|| re(r"^={20,}\s*$"));

/// Lines that belong to a report even though they are not frames: they keep a report open
/// after its first stack (register dumps, lockdep chains, KASAN alloc/free sections).
pub(crate) static CONTINUATION: LazyLock<Regex> = LazyLock::new(|| {
    re(concat!(
        r"^(?:\s|$|Call Trace:|Last Breaking-Event-Address:|Krnl |User |CPU: |Hardware name:|Modules linked in|",
        r"Workqueue:|irq event stamp|hardirqs |softirqs |other info|Possible unsafe|-> #|Chain exists|stack backtrace|",
        r"Allocated by|Freed by|Last potentially|The buggy address|Memory state|Read of size|Write of size|",
        r"\S+/\d+ is trying|but task is already|which lock already|the existing dependency|\*\*\*|lock\(|",
        r"\d+ locks? held|#\d+: |[0-9a-f]{16}: |[0-9a-f]{16} \(|>[0-9a-f]{16}:|Kernel panic|---\[|Disabling lock debugging|",
        r"task:|INFO: lockdep|Code:|GPRS|\s*R:\d|kfence-#|allocated by task|freed by task|Tainted|Not tainted|",
        r"\x22echo 0 > /proc/sys/kernel/hung_task_timeout_secs\x22|Showing all locks|Failing address|Fault in|AS:|",
        r"Sending NMI|NMI backtrace|Kernel Offset|Rebooting|Preemption disabled at)"
    ))
});
