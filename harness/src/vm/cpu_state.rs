//! Where a guest's vCPUs are, from QEMU itself: `info registers -a` through QMP's human
//! monitor. It needs nothing of the guest, so it answers when the agent is gone and the
//! console is off: a power-off stuck in `device_shutdown` shows where it is stuck.

use std::path::Path;
use std::sync::LazyLock;

use regex::Regex;

use super::Vm;
use crate::symbolize::Symbols;

// QEMU's s390x state dump: `PSW=mask 0704c00180000000 addr 000003ffe036c072 cc 00`.
static PSW: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"PSW=mask (?P<mask>[0-9a-f]{16}) addr (?P<addr>[0-9a-f]{16})")
        .expect("static regex")
});

/// One vCPU's PSW, in the order QEMU dumped them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Psw {
    pub mask: u64,
    pub addr: u64,
}

/// Every PSW of an `info registers` text.
pub fn psws(dump: &str) -> Vec<Psw> {
    PSW.captures_iter(dump)
        .filter_map(|c| {
            Some(Psw {
                mask: u64::from_str_radix(&c["mask"], 16).ok()?,
                addr: u64::from_str_radix(&c["addr"], 16).ok()?,
            })
        })
        .collect()
}

/// Where a kernel built without KASLR runs against vmlinux's link addresses: s390's
/// `CONFIG_KERNEL_IMAGE_BASE`. `None` with `CONFIG_RANDOMIZE_BASE=y` (then only the guest's
/// own `/proc/kallsyms` can say).
pub fn fixed_offset(config: &str) -> Option<u64> {
    if config
        .lines()
        .any(|l| l.trim() == "CONFIG_RANDOMIZE_BASE=y")
    {
        return None;
    }
    config.lines().find_map(|l| {
        let v = l.trim().strip_prefix("CONFIG_KERNEL_IMAGE_BASE=")?;
        u64::from_str_radix(v.trim_start_matches("0x").trim_start_matches("0X"), 16).ok()
    })
}

/// Where the vCPUs are, in CPU order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuState {
    pub psws: Vec<Psw>,
    /// The function each PSW address falls in (`None`: no symbols, no offset, or outside).
    pub functions: Vec<Option<String>>,
}

impl CpuState {
    /// `dump`'s PSWs, placed in `symbols` at `offset` when both are known.
    pub fn of(dump: &str, symbols: Option<&Symbols>, offset: Option<u64>) -> CpuState {
        let psws = psws(dump);
        let functions = psws
            .iter()
            .map(|p| {
                let (s, o) = (symbols?, offset?);
                s.containing(p.addr.wrapping_sub(o))
                    .map(|(f, _, _)| f.split('.').next().unwrap_or(f).to_owned())
            })
            .collect();
        CpuState { psws, functions }
    }

    /// One line per vCPU: its PSW, the function, and `wait` for a PSW with the wait bit (mask
    /// bit 14): a vCPU with nothing to run, or stopped in a disabled wait.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        for (i, p) in self.psws.iter().enumerate() {
            let wait = p.mask & (1 << (63 - 14)) != 0;
            let at = match self.functions.get(i).cloned().flatten() {
                Some(f) => format!(" ({f})"),
                None => String::new(),
            };
            out.push_str(&format!(
                "CPU {i}: PSW {:016x} {:016x}{at}{}\n",
                p.mask,
                p.addr,
                if wait { " wait" } else { "" }
            ));
        }
        out
    }
}

/// Asks QEMU for every vCPU's registers and places their PSWs with `bzimage`'s vmlinux and
/// `.config` (beside it in the kernel cache). Returns the state and QEMU's whole text.
pub async fn capture(vm: &Vm, bzimage: &Path) -> Option<(CpuState, String)> {
    let cmd = qapi::qmp::human_monitor_command {
        command_line: "info registers -a".into(),
        cpu_index: None,
    };
    let dump = vm
        .qmp
        .execute_timeout(&cmd, std::time::Duration::from_secs(5))
        .await
        .ok()?;
    let rec = crate::kernel::KernelRecord::of_bzimage(bzimage);
    let symbols = rec
        .vmlinux
        .and_then(|v| std::fs::read(v).ok())
        .and_then(|d| Symbols::parse(&d).ok());
    let offset = rec
        .config
        .and_then(|c| std::fs::read_to_string(c).ok())
        .and_then(|c| fixed_offset(&c));
    Some((CpuState::of(&dump, symbols.as_ref(), offset), dump))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape of QEMU 10.0's `info registers -a` on s390x (two vCPUs, registers cut).
    const DUMP: &str = "\nCPU#0\nPSW=mask 0704c00180000000 addr 000003ffe036c072 cc 00\n\
        R00=0000000000000000 R01=0000000000000001\n\nCPU#1\n\
        PSW=mask 0706c00180000000 addr 000003ffe0bd9570 cc 00\nR00=0000000000000000\n";

    #[test]
    fn every_vcpu_psw_is_read_and_the_waiting_one_marked() {
        let p = psws(DUMP);
        assert_eq!(
            p,
            vec![
                Psw {
                    mask: 0x0704c00180000000,
                    addr: 0x3ffe036c072
                },
                Psw {
                    mask: 0x0706c00180000000,
                    addr: 0x3ffe0bd9570
                },
            ]
        );
        let text = CpuState::of(DUMP, None, None).describe();
        assert_eq!(
            text,
            "CPU 0: PSW 0704c00180000000 000003ffe036c072\n\
             CPU 1: PSW 0706c00180000000 000003ffe0bd9570 wait\n"
        );
    }

    #[test]
    fn the_offset_is_the_image_base_unless_randomized() {
        let fixed = "# CONFIG_RANDOMIZE_BASE is not set\nCONFIG_KERNEL_IMAGE_BASE=0x3FFE0000000\n";
        assert_eq!(fixed_offset(fixed), Some(0x3ffe0000000));
        let random = "CONFIG_RANDOMIZE_BASE=y\nCONFIG_KERNEL_IMAGE_BASE=0x3FFE0000000\n";
        assert_eq!(fixed_offset(random), None);
        assert_eq!(fixed_offset("CONFIG_S390=y\n"), None);
    }
}
