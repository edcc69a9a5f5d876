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
//!
//! Not from syzkaller: SLUB's object checks (`BUG kmalloc-64 (Not tainted): Poison
//! overwritten`) are `BUG: Poison overwritten in f`, `f` the object's allocation site.

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
    /// Functions this kind of report passes through on its way to the culprit, on top of
    /// the machinery every report shares (`frames::is_generic`). Prefixes end with `*`.
    pub skip: &'static [&'static str],
    /// The kernel cannot survive this report (nothing else runs after it).
    pub fatal: bool,
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
        skip: &[],
        fatal: false,
    }
}

impl Pattern {
    fn skipping(mut self, skip: &'static [&'static str]) -> Self {
        self.skip = skip;
        self
    }

    fn fatal(mut self) -> Self {
        self.fatal = true;
        self
    }
}

/// Waiting and locking: a hung or stalled task is in them, the culprit called them.
const SKIP_WAIT: &[&str] = &[
    "__schedule",
    "schedule*",
    "io_schedule*",
    "preempt_schedule*",
    "__wait_*",
    "wait_*",
    "do_wait_for_common",
    "__flush_work*",
    "flush_work",
    "flush_workqueue",
    "__flush_workqueue",
    "drain_workqueue",
    "__synchronize_*",
    "synchronize_*",
    "__mutex_lock*",
    "mutex_lock*",
    "__down*",
    "down*",
    "rwsem_down_*",
    "percpu_down_*",
    "__percpu_down_*",
    "kthread_stop*",
    "__refrigerator",
    "msleep*",
    "schedule_timeout*",
    "__cond_resched",
    "_cond_resched",
    "cond_resched",
    "usleep_range*",
    "__lock_sock",
    "lock_sock*",
    "wb_wait_for_completion",
    "__wait_for_common",
    "io_wait_event*",
    "bit_wait*",
    "__wait_on_bit*",
    "out_of_line_wait_on_bit*",
    "folio_wait_*",
    "wait_on_page_bit*",
    "__folio_lock*",
    "__lock_page*",
    "__switch_to",
    "call_rwsem_*",
    "__wait_on_buffer",
    "wait_on_buffer",
    "cv_wait*",
    "__cv_wait*",
];

/// Interrupt, timer and watchdog machinery on the stack of a CPU caught stalling.
const SKIP_STALL: &[&str] = &[
    "*apic_timer_interrupt",
    "sysvec_*",
    "asm_sysvec_*",
    "irq_exit*",
    "__irq_exit_rcu",
    "__do_softirq",
    "do_softirq*",
    "__sysvec_*",
    "handle_softirqs",
    "update_process_times",
    "tick_*",
    "hrtimer_*",
    "__hrtimer_*",
    "__run_hrtimer",
    "print_cpu_stall*",
    "check_cpu_stall",
    "print_other_cpu_stall",
    "dump_cpu_task",
    "nmi_*",
    "arch_trigger_cpumask_backtrace",
    "trigger_*",
    "sched_show_task",
    "show_regs*",
    "watchdog_timer_fn",
    "__run_timers",
    "run_timer_softirq",
    "call_timer_fn",
    "do_ext_irq",
    "do_irq_async",
    "clock_comparator_work",
    "ext_int_handler",
    "do_IRQ",
    "irq_*",
    "__irq_*",
    "handle_irq*",
    "smp_call_function*",
    "generic_smp_call_function*",
    "__flush_smp_call_function_queue",
    "csd_lock_wait*",
    "arch_local_irq_*",
    "cpu_relax",
    "native_safe_halt",
    "printk*",
    "vprintk*",
    "_printk",
    "console_*",
    "serial8250_*",
    "sclp_*",
    "raw_*",
    "queued_spin_*",
    "native_queued_spin_*",
    "__pv_queued_spin_*",
    "arch_spin_*",
    "do_raw_spin_lock",
];

/// The checks a sleeping or scheduling call runs in atomic context.
const SKIP_MIGHT_SLEEP: &[&str] = &[
    "__might_sleep",
    "__might_resched",
    "___might_sleep",
    "might_sleep*",
    "__might_fault",
    "might_fault",
    "__schedule_bug",
    "schedule_debug*",
    "__cond_resched*",
    "cond_resched*",
    "__schedule",
    "schedule*",
    "mutex_lock*",
    "__mutex_lock*",
    "down*",
    "__down*",
    "msleep*",
    "wait_for_completion*",
    "__alloc_pages*",
    "alloc_pages*",
    "kmalloc*",
    "__kmalloc*",
    "kmem_cache_alloc*",
    "slab_pre_alloc_hook*",
    "might_alloc",
    "vmalloc*",
    "__vmalloc*",
];

/// Allocation paths of a leaked object's backtrace.
const SKIP_ALLOC: &[&str] = &[
    "kmemleak_*",
    "__kmalloc*",
    "kmalloc*",
    "kmem_cache_alloc*",
    "__kmem_cache_alloc*",
    "slab_post_alloc_hook*",
    "slab_alloc*",
    "__slab_alloc*",
    "kzalloc*",
    "kcalloc*",
    "kmalloc_trace*",
    "kvmalloc*",
    "__kvmalloc*",
    "kstrdup*",
    "kmemdup*",
    "krealloc*",
    "__alloc_pages*",
    "alloc_pages*",
    "vmalloc*",
    "__vmalloc*",
    "alloc_*_noprof",
    "kmem_cache_alloc_noprof",
    "kmalloc_node*",
    "__kmalloc_node*",
    "__do_kmalloc_node",
    "create_object*",
    "__create_object",
    "kobject_*",
    "kvasprintf*",
    "kasprintf",
    "dev_set_name",
    "kobject_set_name_vargs",
    // A subsystem's own allocation wrappers (`rkzalloc`, `generic_alloc`, `skb_alloc`).
    "*alloc",
    "*alloc_gfp",
];

/// The acquisition site of the lock lockdep was asked about: the first `at:` after the
/// header (`is trying to acquire lock:`, `takes:`, `is trying to lock:`). Old kernels print
/// the address before the symbol.
const LOCK_AT: &str = r", at: (?:\[<[0-9a-f]+>\] )?(?P<func>[A-Za-z_][\w.]*)\+0x";

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
        // SLUB's debug checks name the damaged cache, not a culprit: the writer is unknown and
        // the stack is whoever allocated or freed next, so the object's allocation site names
        // the report.
        row(
            SlabCorruption,
            Main,
            r"^BUG (?P<cache>[\w.-]+) \((?:Not tainted|Tainted: [^)]*)\): (?P<what>[A-Za-z][A-Za-z ]*[a-z])",
            "BUG: {what} in {guilty}",
            &[r"^(?:INFO: )?Allocated in (?P<func>[A-Za-z_][\w.]*)\+0x"],
        ),
        // The header names the function that used the value; the frames follow it without
        // `Call Trace:`.
        row(
            Kmsan,
            Main,
            r"^BUG: KMSAN: (?P<bugtype>[\w-]+) in (?P<func>[A-Za-z_][\w.]*)",
            "KMSAN: {bugtype} in {guilty}",
            &[],
        )
        .skipping(&["kmsan_*", "__msan_*"]),
        row(
            Lockdep,
            Main,
            // `[ INFO: ... ]` is lockdep's header before 4.9.
            r"^(?:WARNING: |\[ INFO: )possible (?:circular locking dependency|recursive locking) detected",
            "possible deadlock in {guilty}",
            &[LOCK_AT],
        ),
        row(
            Lockdep,
            Main,
            r"^(?:WARNING: |\[ INFO: )inconsistent lock state",
            "inconsistent lock state in {guilty}",
            &[LOCK_AT],
        ),
        row(
            Lockdep,
            Main,
            r"^(?:\[ )?(?:BUG|WARNING): [Ii]nvalid wait context",
            "BUG: Invalid wait context in {guilty}",
            &[LOCK_AT],
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
            // A mailer may wrap the line after `at`.
            r"^BUG: sleeping function called from invalid context(?: at (?P<loc>\S+))?",
            "BUG: sleeping function called from invalid context in {guilty}",
            &[],
        )
        .skipping(SKIP_MIGHT_SLEEP),
        row(
            SchedAtomic,
            Main,
            r"^BUG: scheduling while atomic: ",
            "BUG: scheduling while atomic in {guilty}",
            &[],
        )
        .skipping(SKIP_MIGHT_SLEEP),
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
        )
        .skipping(SKIP_WAIT),
        // Self-detected, detected (other CPUs or tasks) and expedited stalls; kernels
        // before 5.1 print no `rcu: ` in front.
        row(
            RcuStall,
            Main,
            r"^(?:rcu: )?INFO: rcu_\w+ (?:self-detected stall|detected (?:expedited )?stalls?)",
            "INFO: rcu detected stall in {guilty}",
            &[],
        )
        .skipping(SKIP_STALL),
        row(
            SoftLockup,
            Main,
            r"^(?:(?:NMI )?watchdog: )?BUG: soft lockup - CPU#\d+ stuck for \d+s!",
            "BUG: soft lockup in {guilty}",
            &[],
        )
        .skipping(SKIP_STALL),
        row(
            SoftLockup,
            Main,
            r"^(?:NMI watchdog: )?Watchdog detected hard LOCKUP on cpu",
            "BUG: hard lockup in {guilty}",
            &[],
        )
        .skipping(SKIP_STALL),
        row(
            Bug,
            Main,
            r"^BUG: workqueue lockup - pool",
            "BUG: workqueue lockup",
            &[],
        ),
        row(
            Bug,
            Main,
            r"^BUG: using (?P<what>smp_processor_id|__this_cpu_\w+)\(\) in preemptible",
            "BUG: using {what}() in preemptible code in {guilty}",
            &[],
        ),
        row(
            Bug,
            Main,
            r"^BUG: Bad page (?P<what>state|map)",
            "BUG: Bad page {what} in {guilty}",
            &[],
        ),
        row(
            Bug,
            Main,
            r"^BUG: Bad rss-counter state",
            "BUG: Bad rss-counter state",
            &[],
        ),
        row(
            MemoryLeak,
            Main,
            r"^unreferenced object 0x[0-9a-f]+ \(size \d+\):",
            "memory leak in {guilty}",
            &[],
        )
        .skipping(SKIP_ALLOC),
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
            r"^list_(?P<op>add|del) (?:corruption|double add)",
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
        // lib/string_helpers.c (fortify_panic) and the field-spanning write WARN (6.0+).
        row(
            Fortify,
            Prefix,
            r"^(?:detected buffer overflow in (?P<fn>\w+)|(?P<fn2>\w+): detected field-spanning write)",
            "BUG: fortify-source {fn}{fn2} in {guilty}",
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
        // arm64 and arm: the fault, then `Internal error: Oops:`.
        row(
            Oops,
            Prefix,
            r"^Unable to handle kernel (?:NULL pointer dereference|paging request|execute from non-executable memory|access to user memory|read from unreadable memory|write to read-only memory) at virtual address (?:0x)?(?P<fault_addr>[0-9a-f]+)",
            "BUG: unable to handle kernel {fault} in {guilty}",
            &[],
        ),
        // The list checker's BUG() when the log lost the message line before it.
        row(
            ListCorruption,
            Prefix,
            r"^kernel BUG at (?:\S*/)?lib/list_debug\.c:\d+!?\s*$",
            "BUG: corrupted list in {guilty}",
            &[],
        ),
        row(
            Bug,
            Prefix,
            r"^kernel BUG at (?P<loc>\S+?)!?\s*$",
            "kernel BUG in {guilty}",
            &[],
        ),
        // x86: the fault, then `Oops: 0000 [#1] SMP` or `general protection fault`.
        row(
            Oops,
            Prefix,
            r"^BUG: (?:kernel NULL pointer dereference, address:|unable to handle kernel NULL pointer dereference at)",
            "BUG: unable to handle kernel NULL pointer dereference in {guilty}",
            &[],
        ),
        row(
            Oops,
            Prefix,
            r"^BUG: unable to handle (?:page fault for address:|kernel paging request at)",
            "BUG: unable to handle kernel paging request in {guilty}",
            &[],
        ),
        row(
            Oops,
            Joinable,
            r"^(?:Oops: )?general protection fault(?:, probably for non-canonical address 0x[0-9a-f]+)?: [0-9a-f]{4} \[#\d+\]",
            "general protection fault in {guilty}",
            &[],
        ),
        row(
            Oops,
            Joinable,
            r"^(?:Internal error: )?Oops(?: - BUG)?: (?:0x)?[0-9a-f]+(?: ilc:\d)? \[#\d+\]",
            "Oops in {guilty}",
            &[],
        ),
        row(
            Bug,
            Joinable,
            r"^(?:Oops: )?invalid opcode: [0-9a-f]{4} \[#\d+\]",
            "invalid opcode in {guilty}",
            &[],
        ),
        // Generic lines that a prefix may have announced.
        row(
            Warning,
            Joinable,
            r"^WARNING: (?:CPU: \d+ PID: \d+ )?at (?:(?P<loc>\S+:\d+) )?(?P<func>[A-Za-z_][\w.]*)(?:\+0x|\(\)| \(\S+:\d+)",
            "WARNING in {guilty}",
            &[],
        ),
        // A mailer's wrap after the location: the function is on the next line, the stack
        // names the culprit.
        row(
            Warning,
            Joinable,
            r"^WARNING: (?:CPU: \d+ PID: \d+ )?at (?P<loc>\S+:\d+)\s*$",
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
            Bug,
            Joinable,
            r"^monitor event: [0-9a-f]{4} ilc:\d \[#\d+\]",
            "kernel BUG in {guilty}",
            &[],
        ),
        row(
            ProgramCheck,
            Joinable,
            r"^(?P<name>[a-zA-Z][a-zA-Z -]*[a-z]): [0-9a-f]{4}(?: ilc:\d)? \[#\d+\]",
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
        // The s390 decompressor and early setup, before the kernel's own handlers: no
        // symbols, and the machine stops in a disabled wait.
        row(
            ProgramCheck,
            Main,
            r"Kernel fault: interruption code (?P<code>[0-9a-f]{4}) ilc:\d",
            "kernel fault: interruption code {code}",
            &[],
        )
        .fatal(),
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
        r"Sending NMI|NMI backtrace|Kernel Offset|Rebooting|Preemption disabled at|",
        // x86 and arm64 register dumps and trace markers
        r"RIP:|EIP:|RSP:|RAX:|RBX:|RCX:|RDX:|RBP:|RSI:|RDI:|R\d+:|FS:|GS:|CS:|DS:|ES:|CR\d:|DR\d:|PKRU:|EFLAGS|",
        r"</?(?:IRQ|TASK|NMI|EOI|SOFTIRQ)>|\? |\[<[0-9a-f]+>\] \? |pc :|lr :|sp :|x\d+ ?:|pstate:|Call trace:|Internal error|",
        r"Mem abort info|  ESR|  EC =|  SET =|  EA =|  FSC|Data abort info|  ISV|  CM =|user pgtable|swapper pgtable|pgd=|\[[0-9a-f]{16}\] pgd|",
        r"#PF:|PGD |Exception stack|Dumping ftrace|Backtrace:|PC is at|LR is at|NIP|LR =|MSR|Instruction dump|",
        r"CPU\d*:|RCU grace-period|rcu: |\(detected by|\(t=|task:|Sending|Task dump|hex dump|backtrace:|comm \x22|)"
    ))
});
