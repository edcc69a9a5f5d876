//! A crash report's frames, decoded: which address each frame stands for at link time, the
//! function it is in, and its source positions.

use std::collections::HashMap;
use std::sync::LazyLock;

use regex::Regex;
use serde::Serialize;

use super::{Location, Symbolizer};
use crate::oracle::crash::{CrashReport, Frame};

/// How a frame's address relates to the code it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FrameRole {
    /// The PSW: the instruction that faulted (or the one after it, for illegal operations).
    Psw,
    /// A call-trace entry at the PSW address.
    Exact,
    /// A return address: it points after the call, so the call itself is at `addr - 1`.
    Return,
    /// s390's "Last Breaking-Event-Address": the branch instruction itself that led here,
    /// the most telling frame when the PSW is garbage (a jump to NULL).
    LastBreak,
}

#[derive(Debug, Clone, Serialize)]
pub struct DecodedFrame {
    pub role: FrameRole,
    pub frame: Frame,
    /// The address at link time (what vmlinux's symbols and DWARF use).
    pub link_addr: Option<u64>,
    /// The function and offset the address belongs to, when the kernel printed none (raw
    /// `0x…` frames) and vmlinux knows it.
    pub resolved: Option<String>,
    /// Innermost (inlined) first, the containing function last.
    pub locations: Vec<Location>,
    /// Why a frame has no position, or what an address outside kernel text means.
    pub note: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DecodedTrace {
    pub title: String,
    pub vmlinux: String,
    pub has_lines: bool,
    /// Runtime minus link-time address, measured on frames that print both (KASLR).
    pub slide: Option<i64>,
    pub frames: Vec<DecodedFrame>,
}

impl DecodedTrace {
    /// Frames that decoded to a file and line.
    pub fn decoded(&self) -> usize {
        self.frames
            .iter()
            .filter(|f| f.locations.iter().any(|l| l.line.is_some()))
            .count()
    }
}

static PSW: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"Krnl PSW : [0-9a-f]+ (?P<addr>[0-9a-f]+) \((?P<sym>[^\s)]+)(?:\s+\[(?P<module>[\w-]+)\])?\)")
        .expect("static regex")
});
static SYM: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^(?P<func>[A-Za-z_.$][\w.$]*)\+0x(?P<off>[0-9a-f]+)/0x(?P<size>[0-9a-f]+)$")
        .expect("static regex")
});

fn psw_frame(text: &str) -> Option<Frame> {
    let c = PSW.captures(text)?;
    let addr = u64::from_str_radix(&c["addr"], 16).ok();
    let module = c.name("module").map(|m| m.as_str().to_string());
    let sym = &c["sym"];
    Some(match SYM.captures(sym) {
        Some(s) => Frame {
            func: s["func"].to_string(),
            offset: u64::from_str_radix(&s["off"], 16).ok(),
            size: u64::from_str_radix(&s["size"], 16).ok(),
            module,
            addr,
            in_parens: false,
        },
        None => Frame {
            func: sym.to_string(),
            offset: None,
            size: None,
            module,
            addr,
            in_parens: false,
        },
    })
}

/// The address on the line after `Last Breaking-Event-Address:`.
fn last_break_addr(text: &str) -> Option<u64> {
    let mut lines = text.lines();
    lines.find(|l| l.contains("Last Breaking-Event-Address:"))?;
    let next = lines.next()?;
    let start = next.find("[<")? + 2;
    let end = next[start..].find(">]")? + start;
    u64::from_str_radix(&next[start..end], 16).ok()
}

/// Link-time address of a frame printed as `func+off/size`.
fn by_symbol(s: &Symbolizer, f: &Frame) -> Option<u64> {
    if !f.is_symbol() || mismatch(s, f).is_some() {
        return None;
    }
    let (sym, _) = s.symbols().lookup(&f.func, f.size)?;
    Some(sym.addr + f.offset.unwrap_or(0))
}

/// kallsyms sizes are ELF sizes plus alignment padding; more than that means the trace was
/// printed by another build, and decoding it with this vmlinux would give wrong lines.
const MAX_PADDING: u64 = 0x40;

/// Why a named frame cannot be decoded with this vmlinux, if it cannot.
fn mismatch(s: &Symbolizer, f: &Frame) -> Option<String> {
    let (sym, _) = s.symbols().lookup(&f.func, f.size)?;
    if let Some(m) = &f.module {
        return Some(format!(
            "printed as part of module {m}, but built into this vmlinux: the trace comes from another build; decode it with that build's {m}.ko"
        ));
    }
    let printed = f.size?;
    (sym.size > printed || printed - sym.size >= MAX_PADDING).then(|| {
        format!(
            "printed size {printed:#x}, but {} is {:#x} bytes in this vmlinux: the trace comes from another build; not decoded",
            f.func, sym.size
        )
    })
}

/// The most common runtime-minus-link-time difference among frames that have both.
fn measure_slide(s: &Symbolizer, frames: &[&Frame]) -> Option<i64> {
    let mut votes: HashMap<i64, usize> = HashMap::new();
    for f in frames {
        if let (Some(rt), Some(link)) = (f.addr, by_symbol(s, f)) {
            *votes.entry(rt.wrapping_sub(link) as i64).or_default() += 1;
        }
    }
    votes
        .into_iter()
        .max_by_key(|(slide, n)| (*n, -slide.abs()))
        .map(|(s, _)| s)
}

/// Decodes the PSW and every call-trace frame of `report`.
pub fn decode(report: &CrashReport, s: &Symbolizer) -> DecodedTrace {
    let psw = psw_frame(&report.text);
    let all: Vec<&Frame> = psw.iter().chain(report.frames.iter()).collect();
    let slide = measure_slide(s, &all);
    let last_break = last_break_addr(&report.text);
    let mut out = Vec::new();
    if let Some(p) = &psw {
        out.push(decode_frame(s, p, FrameRole::Psw, slide));
    }
    for (i, f) in report.frames.iter().enumerate() {
        let exact = match (&psw, f.addr) {
            (Some(p), Some(a)) => p.addr == Some(a) && !f.in_parens,
            // Without a PSW the first entry is where the trace was taken.
            _ => i == 0 && !f.in_parens,
        };
        let role = if last_break.is_some() && f.addr == last_break {
            FrameRole::LastBreak
        } else if exact {
            FrameRole::Exact
        } else {
            FrameRole::Return
        };
        out.push(decode_frame(s, f, role, slide));
    }
    DecodedTrace {
        title: report.title.clone(),
        vmlinux: s.vmlinux.display().to_string(),
        has_lines: s.has_lines(),
        slide,
        frames: out,
    }
}

fn decode_frame(s: &Symbolizer, f: &Frame, role: FrameRole, slide: Option<i64>) -> DecodedFrame {
    let mut d = DecodedFrame {
        role,
        frame: f.clone(),
        link_addr: None,
        resolved: None,
        locations: Vec::new(),
        note: None,
    };
    let link = match by_symbol(s, f) {
        Some(a) => Some(a),
        None if f.is_symbol() => {
            d.note = Some(match (mismatch(s, f), &f.module) {
                (Some(why), _) => why,
                (None, Some(m)) => format!("in module {m}, not in vmlinux: decode with {m}.ko"),
                (None, None) => format!(
                    "{} is not a function in this vmlinux (another build?)",
                    f.func
                ),
            });
            None
        }
        None => {
            // A raw address: the kernel found no symbol for it either.
            let rt = f
                .addr
                .or_else(|| u64::from_str_radix(f.func.trim_start_matches("0x"), 16).ok());
            match rt {
                Some(rt) if rt < 0x1000 => {
                    d.note = Some(null_note(rt, role));
                    None
                }
                Some(rt) => {
                    let link = rt.wrapping_sub(slide.unwrap_or(0) as u64);
                    match s.symbols().containing(link) {
                        Some((name, off, size)) => {
                            d.resolved = Some(format!("{name}+{off:#x}/{size:#x}"));
                            Some(link)
                        }
                        None => {
                            d.note = Some(
                                "not in kernel text (module, BPF or a corrupted stack)".into(),
                            );
                            None
                        }
                    }
                }
                None => None,
            }
        }
    };
    d.link_addr = link;
    if let Some(a) = link {
        // Return addresses point past the call; `-1` lands inside the call instruction
        // (s390 instructions are 2, 4 or 6 bytes), as gdb and decode_stacktrace.sh do.
        let probe = if matches!(role, FrameRole::Return) {
            a.saturating_sub(1)
        } else {
            a
        };
        d.locations = s.locations(probe);
        if d.locations.is_empty() {
            d.note = Some(if s.has_lines() {
                "no line information for this address".into()
            } else {
                "vmlinux has no DWARF line tables (build with debug info)".into()
            });
        }
    }
    d
}

fn null_note(addr: u64, role: FrameRole) -> String {
    let what = if addr == 0 {
        "address 0".to_string()
    } else {
        format!("NULL + {addr:#x}")
    };
    match role {
        // An illegal-operation PSW points past the 2-byte 0x0000 it executed at address 0.
        FrameRole::Psw | FrameRole::Exact if addr == 2 => {
            "the CPU executed the zero halfword at address 0 (PSW = 0 + 2): a call through a NULL function pointer".into()
        }
        _ => format!("{what}: page 0 holds no code; a call through a NULL (or NULL-based) function pointer"),
    }
}

/// The trace as a developer pastes it: each frame as the kernel printed it, then its source
/// position; inlined functions on their own lines, innermost first.
pub fn render(t: &DecodedTrace) -> String {
    let mut out = String::new();
    for d in &t.frames {
        let f = &d.frame;
        let sym = match (f.offset, f.size) {
            (Some(o), Some(sz)) => format!("{}+{o:#x}/{sz:#x}", f.func),
            _ => f.func.clone(),
        };
        let module = f
            .module
            .as_ref()
            .map(|m| format!(" [{m}]"))
            .unwrap_or_default();
        let addr = f.addr.map(|a| format!("[<{a:016x}>] ")).unwrap_or_default();
        let head = match d.role {
            FrameRole::Psw => format!("PSW {addr}{sym}{module}"),
            FrameRole::LastBreak => format!("last breaking event {addr}{sym}{module}"),
            _ if f.in_parens => format!("({addr}{sym}{module})"),
            _ => format!("{addr}{sym}{module}"),
        };
        let resolved = d
            .resolved
            .as_ref()
            .map(|r| format!(" = {r}"))
            .unwrap_or_default();
        let outer = d.locations.last();
        let pos = outer
            .map(|l| format!(" {}", l.file_line()))
            .unwrap_or_default();
        out.push_str(&format!(" {head}{resolved}{pos}\n"));
        for l in d.locations.iter().filter(|l| l.inlined) {
            out.push_str(&format!(
                "     inlined: {} {}\n",
                l.function.as_deref().unwrap_or("??"),
                l.file_line()
            ));
        }
        if let Some(n) = &d.note {
            out.push_str(&format!("     note: {n}\n"));
        }
    }
    out
}
