//! Stack frames in kernel reports and the choice of the guilty function.

use regex::Regex;
use serde::Serialize;
use std::sync::LazyLock;

/// One frame of a call trace (or the PSW / an `at:` location).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Frame {
    /// Symbol name, or the raw address text (`0x2`) when the kernel could not resolve it.
    pub func: String,
    pub offset: Option<u64>,
    pub size: Option<u64>,
    pub module: Option<String>,
    pub addr: Option<u64>,
    /// s390 prints the frame whose return address is not reliable, typically the "last
    /// breaking event" caller of a function that jumped to garbage, in parentheses.
    pub in_parens: bool,
}

impl Frame {
    /// Whether `func` is a real symbol name rather than an unresolved address.
    pub fn is_symbol(&self) -> bool {
        !self.func.starts_with("0x") && !self.func.is_empty()
    }
}

// ` [<addr>] sym+off/size [mod]`, `([<addr>] sym+off/size [mod])`, and stack-depot lines
// without an address (` sym+off/size`) as KASAN prints for alloc/free stacks.
static FRAME: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"^\s*(?P<paren>\()?(?:\[<(?P<addr>[0-9a-fA-F]+)>\]\s+)(?P<unreliable>\?\s+)?(?P<sym>[^\s()]+)(?:\s+\[?(?P<module>[\w-]+)[\]!])?\)?\s*$",
    )
    .expect("static regex")
});
static DEPOT_FRAME: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"^\s*(?P<unreliable>\?\s+)?(?P<sym>[A-Za-z_][\w.]*\+0x[0-9a-f]+/0x[0-9a-f]+)(?:\s+\[(?P<module>[\w-]+)(?:\s+\w+)?\])?\s*$",
    )
    .expect("static regex")
});
static SYM: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^(?P<func>[A-Za-z_.$][\w.$]*)\+0x(?P<off>[0-9a-f]+)/0x(?P<size>[0-9a-f]+)$")
        .expect("static regex")
});
static PSW: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^Krnl PSW : [0-9a-f]+ (?P<addr>[0-9a-f]+) \((?P<sym>[^\s)]+)(?:\s+\[(?P<module>[\w-]+)\])?\)")
        .expect("static regex")
});

fn hex(s: &str) -> Option<u64> {
    u64::from_str_radix(s, 16).ok()
}

/// Splits `func+0xoff/0xsize` into its parts; anything else is kept whole as `func`.
pub fn parse_symbol(sym: &str, module: Option<&str>, addr: Option<u64>, in_parens: bool) -> Frame {
    let module = module.map(str::to_owned);
    match SYM.captures(sym) {
        Some(c) => Frame {
            func: c["func"].to_owned(),
            offset: hex(&c["off"]),
            size: hex(&c["size"]),
            module,
            addr,
            in_parens,
        },
        None => Frame {
            func: sym.to_owned(),
            offset: None,
            size: None,
            module,
            addr,
            in_parens,
        },
    }
}

// A frame decoded by scripts/decode_stacktrace.sh: `f (file.c:12)`, `f+0x1/0x2 (file.c:12)`.
static DECODED_FRAME: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"^\s*(?P<unreliable>\?\s+)?(?P<sym>[A-Za-z_][\w.]*(?:\+0x[0-9a-f]+/0x[0-9a-f]+)?) \((?:[\w./-]+:\d+(?::\d+)?\s*)+\)(?:\s+\[(?P<module>[\w-]+)\])?\s*$",
    )
    .expect("static regex")
});

// A frame symbolized by syzkaller: `f+0x1/0x2 path/file.c:12`, `f path/file.h:3 [inline]`,
// with or without s390's `[<addr>]` in front.
static SYZ_FRAME: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"^\s*(?P<paren>\()?(?:\[<(?P<addr>[0-9a-fA-F]+)>\]\s+)?(?P<unreliable>\?\s+)?(?P<sym>[A-Za-z_][\w.]*(?:\+0x[0-9a-f]+/0x[0-9a-f]+)?)\s+(?:[\w.-]+/)*[\w.-]+\.[chS]:\d+(?::\d+)?(?:\s+\[inline\])?(?:\s+\[(?P<module>[\w-]+)\])?\)?\s*$",
    )
    .expect("static regex")
});

/// A call-trace line: `[<addr>] f+off/size [mod]` (s390, old x86/arm64), `f+off/size [mod]`
/// (x86 and arm64 since 4.x, stack depot), or `([<addr>] f)` (s390's unreliable return
/// frame). Frames x86 marks `?` are stale stack contents, not calls: `None`.
pub fn parse_frame(msg: &str) -> Option<Frame> {
    if let Some(c) = FRAME.captures(msg) {
        if c.name("unreliable").is_some() {
            return None;
        }
        return Some(parse_symbol(
            &c["sym"],
            c.name("module").map(|m| m.as_str()),
            hex(&c["addr"]),
            c.name("paren").is_some(),
        ));
    }
    if let Some(c) = SYZ_FRAME.captures(msg) {
        if c.name("unreliable").is_some() {
            return None;
        }
        return Some(parse_symbol(
            &c["sym"],
            c.name("module").map(|m| m.as_str()),
            c.name("addr").and_then(|a| hex(a.as_str())),
            c.name("paren").is_some(),
        ));
    }
    DEPOT_FRAME
        .captures(msg)
        .or_else(|| DECODED_FRAME.captures(msg))
        .filter(|c| c.name("unreliable").is_none())
        .map(|c| parse_symbol(&c["sym"], c.name("module").map(|m| m.as_str()), None, false))
}

/// Where a report says the CPU was: s390 `Krnl PSW :`, x86 `RIP: 0010:`, arm64 `pc : `.
#[derive(Debug, Clone)]
pub(crate) struct FaultLocation {
    pub frame: Frame,
    /// The address is (nearly) zero: a call through a NULL function pointer.
    pub null_call: bool,
}

static RIP: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^\s*(?:RIP|EIP|IP): (?:[0-9a-f]{4}:)?(?:\[<(?P<addr>[0-9a-f]+)>\] )?(?P<sym>[^\s()]+?)(?:\(\))?(?:\s+\[(?P<module>[\w-]+)\])?\s*$")
        .expect("static regex")
});
static PC: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^\s*(?:(?:pc|NIP) ?: ?|PC is at )(?:\[<(?P<addr>[0-9a-f]+)>\] )?(?P<sym>[^\s()]+)(?:\s+\[(?P<module>[\w-]+)\])?\s*$")
        .expect("static regex")
});
static LR: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^\s*(?:(?:lr|LR) ?: ?|LR is at )(?:\[<(?P<addr>[0-9a-f]+)>\] )?(?P<sym>[^\s()]+)(?:\s+\[(?P<module>[\w-]+)\])?\s*$")
        .expect("static regex")
});

// `Workqueue: cio ccw_device_todo`: the pool's name, then the work function it runs.
static WORKQUEUE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^\s*Workqueue: \S+ (?P<func>[A-Za-z_][\w.]*)\s*$").expect("static regex")
});

/// The work function a report's `Workqueue:` line names. When a work function ends with a
/// tail call into a checker (`put_device()` as its last statement, reaching
/// `refcount_warn_saturate`), its own frame is gone from the stack, and `process_one_work`
/// seems to call the checker: the work function is then the only trace of the culprit.
pub(crate) fn work_function(lines: &[String]) -> Option<Frame> {
    lines.iter().find_map(|l| {
        let c = WORKQUEUE.captures(l)?;
        Some(parse_symbol(&c["func"], None, None, false))
    })
}

/// The largest address taken for a call through NULL: s390 reports the PSW after the
/// 2-byte illegal operation at 0 (`0x2`), x86 and arm64 report 0 itself.
const NULL_CALL_MAX: u64 = 0x10;

fn null_address(f: &Frame) -> bool {
    let raw = f.func.trim_start_matches("0x");
    (!f.is_symbol() && u64::from_str_radix(raw, 16).is_ok_and(|a| a <= NULL_CALL_MAX))
        || f.addr.is_some_and(|a| a <= NULL_CALL_MAX)
}

pub(crate) fn parse_fault_location(msg: &str) -> Option<FaultLocation> {
    let frame = parse_psw(msg).or_else(|| {
        let c = RIP.captures(msg).or_else(|| PC.captures(msg))?;
        Some(parse_symbol(
            &c["sym"],
            c.name("module").map(|m| m.as_str()),
            c.name("addr").and_then(|a| hex(a.as_str())),
            false,
        ))
    })?;
    let null_call = null_address(&frame);
    Some(FaultLocation { frame, null_call })
}

/// The caller of a function that jumped to NULL: s390's last breaking event (on its line
/// or the next), arm64's link register, else the first resolved return frame.
pub(crate) fn caller_of_null_call(lines: &[String]) -> Option<Frame> {
    for (i, l) in lines.iter().enumerate() {
        let t = l.trim_start();
        if let Some(rest) = t.strip_prefix("Last Breaking-Event-Address:") {
            let f = parse_frame(rest).or_else(|| lines.get(i + 1).and_then(|n| parse_frame(n)));
            if let Some(f) = f.filter(Frame::is_symbol) {
                return Some(f);
            }
        }
        if let Some(c) = LR.captures(t) {
            let f = parse_symbol(&c["sym"], c.name("module").map(|m| m.as_str()), None, false);
            if f.is_symbol() {
                return Some(f);
            }
        }
    }
    lines
        .iter()
        .filter_map(|l| parse_frame(l))
        .find(|f| f.is_symbol() && !null_address(f))
}

/// The faulting location of an s390 `Krnl PSW :` line, when the kernel resolved it.
pub fn parse_psw(msg: &str) -> Option<Frame> {
    let c = PSW.captures(msg)?;
    Some(parse_symbol(
        &c["sym"],
        c.name("module").map(|m| m.as_str()),
        hex(&c["addr"]),
        false,
    ))
}

/// Functions that report, wait, lock or dispatch rather than misbehave: the guilty frame
/// is the first one that is none of these. Prefixes end with `*`.
const GENERIC: &[&str] = &[
    // reporting machinery
    "__warn",
    // XFS's ASSERT() reporter, the WARN of a failed assertion
    "assfail",
    "warn_slowpath_fmt",
    "__warn_printk",
    "report_bug",
    "dump_stack",
    "dump_stack_lvl",
    "dump_backtrace",
    "show_stack",
    "show_regs",
    "panic",
    "nmi_panic",
    "vpanic",
    "die",
    "do_report_trap",
    // x86's path from a WARN/BUG trap to the report (panic_on_warn stacks)
    "__dump_stack",
    "fixup_bug",
    "do_error_trap",
    "do_invalid_op",
    "invalid_op",
    "handle_bug",
    "exc_invalid_op",
    "asm_exc_invalid_op",
    "do_trap",
    "__report_bug*",
    "print_report",
    "print_address_description*",
    "kasan_report*",
    "__kasan_*",
    "kasan_*",
    "__asan_*",
    "check_memory_region*",
    "kfence_*",
    "__kfence_*",
    "lockdep_*",
    "__lock_acquire*",
    "lock_acquire*",
    "lock_release",
    "print_circular_bug*",
    "check_noncircular",
    "check_prev_add",
    "check_prevs_add",
    "validate_chain",
    "print_usage_bug",
    "mark_lock*",
    "debug_print_object",
    "debug_object_*",
    "__debug_check_no_obj_freed",
    "debug_check_no_obj_freed",
    "__might_sleep",
    "___might_sleep",
    "__might_resched",
    "__might_fault",
    "might_fault",
    "__schedule_bug",
    "schedule_debug*",
    "refcount_warn_saturate",
    "__refcount_*",
    "refcount_*",
    "__list_add_valid*",
    "__list_del_entry_valid*",
    "__list_add",
    "list_add*",
    "list_del*",
    "__list_del_entry",
    "check_*_stack",
    "usercopy_abort",
    "fortify_panic",
    "__fortify_panic",
    "__fortify_report",
    "__check_heap_object",
    "check_heap_object",
    "__check_object_size",
    "check_object_size",
    "check_copy_size",
    "lkdtm_do_action",
    // LKDTM's and debugfs's dispatch of a write to provoke-crash/DIRECT
    "direct_entry",
    "full_proxy_*",
    // UBSAN's reporting
    "ubsan_*",
    "__ubsan_*",
    // s390 exception entry
    "do_exception",
    "__do_pgm_check",
    "pgm_check_handler",
    "do_no_context",
    "handle_fault_error*",
    "do_dat_exception",
    "do_prot_exception",
    "do_secure_storage_access",
    "illegal_op",
    "monitor_event_exception",
    "__do_syscall",
    "system_call",
    "__s390x_sys_*",
    "__se_sys_*",
    "__do_sys_*",
    "do_syscall*",
    "ret_from_fork",
    "__ret_from_fork",
    "kthread",
    "worker_thread",
    "process_one_work",
    // the async pool's dispatch of an `async_schedule()` function
    "async_run_entry_fn",
    "do_irq*",
    "do_io_irq",
    "io_int_handler",
    "ext_int_handler",
    // sleeping and locking primitives
    "__schedule",
    "schedule",
    "schedule_*",
    "io_schedule*",
    "preempt_schedule*",
    "do_wait_for_common",
    "__wait_for_common",
    "wait_for_common*",
    "wait_for_completion*",
    "prepare_to_wait*",
    "finish_wait",
    "msleep",
    "msleep_interruptible",
    "usleep_range*",
    "_raw_spin_*",
    "__raw_spin_*",
    "do_raw_spin_*",
    // the scheduler's wrappers of the runqueue lock
    "raw_spin_rq_*",
    "_raw_read_*",
    "_raw_write_*",
    "spin_*",
    "mutex_lock*",
    "__mutex_lock*",
    "mutex_unlock",
    "__mutex_unlock*",
    // a mutex's (or rwsem's) optimistic spinning on its owner: the spin queue lives in the
    // lock, so a freed lock is first written there
    "osq_lock",
    "osq_unlock",
    "mutex_spin_on_owner",
    "mutex_optimistic_spin",
    "down",
    "down_*",
    "__down*",
    "rwsem_*",
    "up",
    "up_*",
    "rcu_*",
    "__rcu_*",
    "synchronize_rcu*",
    "flush_work",
    "__flush_work",
    "kfree",
    "kmem_cache_free",
    "slab_free*",
    "__slab_free",
    "kmalloc*",
    "__kmalloc*",
    "___kmalloc*",
    "mempool_alloc*",
    "kmem_cache_alloc*",
    "memcpy",
    "memset",
    "memmove",
    "strlen",
    "strcmp",
    "strncpy",
    "strscpy",
    "__memcpy",
    "copy_from_user*",
    "copy_to_user*",
    "_copy_from_user",
    "_copy_to_user",
];

pub fn is_generic(func: &str) -> bool {
    matches_any(GENERIC, func)
}

/// Whether `func` is in `list` (entries ending with `*` are prefixes, starting with `*` suffixes).
pub(crate) fn matches_any(list: &[&str], func: &str) -> bool {
    // Compiler clones (`f.isra.0`, `f.constprop.0`, `f.cold`) are the function itself.
    let func = func.split('.').next().unwrap_or(func);
    list.iter().any(|g| {
        if let Some(prefix) = g.strip_suffix('*') {
            func.starts_with(prefix)
        } else if let Some(suffix) = g.strip_prefix('*') {
            func.ends_with(suffix)
        } else {
            func == *g
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_frame_forms() {
        let f = parse_frame("([<000003ff80179d74>] vfio_ccw_mdev_ioctl+0x84/0x318 [vfio_ccw])")
            .expect("frame");
        assert_eq!(f.func, "vfio_ccw_mdev_ioctl");
        assert_eq!((f.offset, f.size), (Some(0x84), Some(0x318)));
        assert_eq!(f.module.as_deref(), Some("vfio_ccw"));
        assert!(f.in_parens);
        let f = parse_frame(" [<000003ffe015e0c2>] panic+0x2f2/0x308 ").expect("frame");
        assert_eq!((f.func.as_str(), f.addr), ("panic", Some(0x3ffe015e0c2)));
        let f = parse_frame("[<0000000000000002>] 0x2").expect("frame");
        assert!(!f.is_symbol());
        let f = parse_frame(" kasan_save_stack+0x34/0x58").expect("depot frame");
        assert_eq!(f.func, "kasan_save_stack");
        assert!(parse_frame("Call Trace:").is_none());
        assert!(parse_frame("vfio_ccw 0.0.0000: MDEV: Registered").is_none());
    }

    #[test]
    fn parses_psw() {
        assert!(
            parse_psw("Krnl PSW : 0704c00180000000 0000000000000002 (0x2)")
                .is_some_and(|f| !f.is_symbol())
        );
        let f = parse_psw("Krnl PSW : 0704c00180000000 000003ffe03cc452 (lkdtm_BUG+0x2/0x8)")
            .expect("psw");
        assert_eq!(f.func, "lkdtm_BUG");
    }
}
