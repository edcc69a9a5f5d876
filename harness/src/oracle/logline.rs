//! Turns a console log, however it was captured, back into the kernel's messages: the crash
//! patterns then see each message as the kernel formatted it.
//!
//! A line goes through three layers, outermost first:
//! 1. what the reader added: mail quoting (`> `) and the indentation of a pasted block;
//! 2. what the capturing machine added: syslog and journal stamps (`Mar  3 12:00:01 host
//!    kernel: `), console servers and CI runners (ISO-8601 dates, host names), z/VM's
//!    virtual-CPU address (`01: `), dmesg's facility column (`kern  :warn  : `);
//! 3. what printk added: the level (`<4>`), the /dev/kmsg record header, the timestamp in
//!    every form the kernel and `dmesg` print (seconds, `-T` ctime, `-H` human and `+delta`,
//!    `-d` deltas, ISO), and the caller id (`[T53]`, `[C1]`).
//!
//! Then lines are put back together where something cut them: hard wraps at the console's
//! width (z/VM cuts at 80 columns), mail or terminal wraps of long lines, and a frame's
//! `[module]` pushed onto a line of its own. In a log whose kernel lines carry timestamps, a
//! line without one at column 0 is user space writing to the console: marked, not dropped.

use regex::Regex;
use std::sync::LazyLock;

fn re(s: &str) -> Regex {
    Regex::new(s).expect("static regex")
}

/// Mail quoting: `>`, `> >`, `>>`, followed by a space or the end of the line (`>0000…` in
/// an s390 `Krnl Code` dump is not quoting).
static QUOTE: LazyLock<Regex> = LazyLock::new(|| re(r"^[ \t]*(?:>[ \t]?)*>(?:[ \t]|$)"));

/// Layer 2, applied once, anchored after optional indentation. The `kernel` group tells a
/// kernel line of a syslog/journal from another program's (`systemd[1]: `).
static CAPTURE: LazyLock<Regex> = LazyLock::new(|| {
    re(concat!(
        r"^[ \t]*(?:",
        // BSD syslog / journalctl short: `Mar  3 12:00:01 host kernel: `, `host prog[12]: `
        // (month names in any language: `июл 27 14:08:03`; `kernel: : ` from some relays)
        r"(?P<syslog>\p{L}{3,4}\.? [ 0-3]?\d \d{2}:\d{2}:\d{2}(?:\.\d+)? [\w.*-]+ ",
        r"(?:kernel|(?P<prog>[^\s:\[]+(?:\[\d+\])?)):(?: :)?(?: |$))",
        // ISO-8601 date first: rsyslog, journalctl -o short-iso, dmesg --time-format iso,
        // console servers and CI runners; optionally bracketed, then an optional host and
        // program (a program only with its pid: `usb 1-1: ` is a kernel message)
        r"|(?P<iso>\[?\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?(?:Z|[+-]\d{2}:?\d{2})?\]?:?[ \t]+",
        r"(?:[\w.-]+ (?:kernel|(?P<prog2>[^\s:\[]+\[\d+\])):(?: |$))?)",
        // a console server or CI runner that stamps each line with the time of day only
        r"|(?P<clock>\d{2}:\d{2}:\d{2}(?:\.\d+)?[ \t]+)",
        // syslogd's wall message to terminals: ` kernel:[ 12.3] msg`
        r"|(?P<wall>kernel:)",
        // z/VM console: the virtual CPU address in front of every line of a virtual MP guest
        r"|(?P<zvm>\d{2}: )",
        // dmesg -x: facility and level columns
        r"|(?P<facility>(?:kern|user|mail|daemon|auth|syslog|lpr|news|uucp|cron|authpriv|ftp|local\d) *:[a-z]+ *: )",
        r")"
    ))
});

/// Layer 3, applied repeatedly because the prefixes stack (`<4>[   1.2] [T53] msg`).
static PRINTK: LazyLock<Regex> = LazyLock::new(|| {
    re(concat!(
        r"^(?:",
        r"<\d{1,3}>",           // syslog level (`dmesg -r`, /dev/kmsg readers)
        r"|\d+,\d+,\d+,[^;]*;", // /dev/kmsg record header: level,seq,usec,flags;
        r"|(?P<ts>",            // timestamps:
        r"\[\s*\d+\.\d*(?:\s*<\s*\d+\.\d+>)?\]", // `[ 12.345678]`, dmesg -d `[ 1.2 < 0.1>]`
        r"|\[\s*[+<]\s*\d+\.\d+>?\]", // dmesg -H / --time-format delta
        r"|\s*\d+\.\d{6}!",     // a console that drops `[` and shows `]` as `!`
        r"|\d+\.\d{6}\]",       // a paste that lost the `[`
        r"|\[[A-Z][a-z]{2} [A-Z][a-z]{2} [ 0-3]?\d \d{2}:\d{2}:\d{2} \d{4}\]", // dmesg -T
        r"|\[[A-Z][a-z]{2}\s?[ 0-3]?\d \d{2}:\d{2}(?::\d{2})?\]", // dmesg -H first of a minute
        r")",
        r"|\[\s*(?P<caller>[TC]\d+)\]", // CONFIG_PRINTK_CALLER
        r")[ \t]?"
    ))
});

/// journalctl -k -o short-monotonic puts the host after the timestamp.
static JOURNAL_HOST: LazyLock<Regex> = LazyLock::new(|| re(r"^[\w.-]+ kernel: "));

/// A line a program writes: its name and a colon first.
static PROGRAM_LINE: LazyLock<Regex> = LazyLock::new(|| re(r"^[\w.-]+(?:\[\d+\])?: "));

/// A frame's module pushed onto its own line by a wrap.
static LONE_MODULE: LazyLock<Regex> = LazyLock::new(|| re(r"^\s*\[?[\w-]+\]\)?\s*$"));

/// A line wrapped by a mail client or terminal is at least this long.
const SOFT_WRAP_MIN: usize = 64;
/// Mail clients and terminals wrap at 72 to 100 columns: a longer line was not wrapped there.
const SOFT_WRAP_MAX: usize = 100;
/// Console widths that cut lines hard, without regard for words (z/VM's 3215 console).
const HARD_WIDTHS: &[usize] = &[80];
/// Lines of exactly a hard width before the log is taken to be hard-wrapped at it.
const HARD_WRAP_EVIDENCE: usize = 2;
/// Indentation of a same-record continuation line that dmesg aligns under the text.
const ALIGNED_INDENT: usize = 4;

/// A console line with what transports and printk add removed.
#[derive(Debug, Clone)]
pub(crate) struct LogLine {
    /// 1-based line number in the input (the first, for lines that were joined).
    pub number: usize,
    pub msg: String,
    /// False for user space: another program's syslog line, or (in a timestamped log) an
    /// unstamped line at column 0. Kernel reports never contain such lines.
    pub kernel: bool,
    /// The printk caller id (`T53`, `C1`), when the kernel printed one.
    pub caller: Option<String>,
}

struct Stripped<'a> {
    msg: &'a str,
    timestamped: bool,
    /// A capture or printk prefix was removed (so the indentation left is the kernel's).
    prefixed: bool,
    kernel: bool,
    caller: Option<String>,
}

fn strip(raw: &str) -> Stripped<'_> {
    let mut s = raw.trim_end_matches(['\r', '\n']);
    if let Some(m) = QUOTE.find(s) {
        s = &s[m.end()..];
    }
    let mut out = Stripped {
        msg: s,
        timestamped: false,
        prefixed: false,
        kernel: true,
        caller: None,
    };
    if let Some(c) = CAPTURE.captures(s) {
        let end = c.get(0).map_or(0, |m| m.end());
        if end > 0 {
            out.kernel = c.name("prog").is_none() && c.name("prog2").is_none();
            // A capture date counts as a timestamp: unstamped lines are then user space.
            out.timestamped =
                c.name("syslog").is_some() || c.name("iso").is_some() || c.name("clock").is_some();
            out.prefixed = true;
            s = &s[end..];
        }
    }
    // Printk prefixes may follow an indentation (a pasted block) when nothing came before.
    let indented = s.trim_start_matches([' ', '\t']);
    let probe = if out.prefixed { s } else { indented };
    let mut t = probe;
    let mut any = false;
    while let Some(c) = PRINTK.captures(t) {
        let end = c.get(0).map_or(0, |m| m.end());
        if end == 0 {
            break;
        }
        if c.name("ts").is_some() {
            out.timestamped = true;
            if let Some(j) = JOURNAL_HOST.find(&t[end..]) {
                t = &t[end + j.end()..];
                any = true;
                continue;
            }
        }
        if let Some(caller) = c.name("caller") {
            out.caller = Some(caller.as_str().to_owned());
        }
        t = &t[end..];
        any = true;
    }
    if any {
        s = t;
        out.prefixed = true;
    }
    out.msg = s;
    out
}

/// The message part of one raw line, and whether it carried a timestamp.
#[cfg(test)]
fn strip_prefixes(raw: &str) -> (&str, bool) {
    let s = strip(raw);
    (s.msg, s.timestamped)
}

fn indent_of(s: &str) -> usize {
    s.len() - s.trim_start_matches([' ', '\t']).len()
}

/// The width at which this log was hard-wrapped, if it was.
fn hard_width(raw: &[&str]) -> Option<usize> {
    HARD_WIDTHS.iter().copied().find(|w| {
        raw.iter()
            .filter(|l| l.trim_end_matches('\r').chars().count() == *w)
            .count()
            >= HARD_WRAP_EVIDENCE
    })
}

pub(crate) fn split(log: &str) -> Vec<LogLine> {
    let raw: Vec<&str> = log.lines().collect();
    let stripped: Vec<Stripped<'_>> = raw.iter().map(|r| strip(r)).collect();
    let out = split_stripped(&raw, &stripped);
    // rsyslog writes the newlines inside a record as `#012`: they are lines of their own.
    if !out.iter().any(|l| l.msg.contains(RSYSLOG_NEWLINE)) {
        return out;
    }
    out.into_iter()
        .flat_map(|l| {
            let parts: Vec<String> = l.msg.split(RSYSLOG_NEWLINE).map(str::to_owned).collect();
            parts
                .into_iter()
                .filter(|p| !p.is_empty())
                .map(move |msg| LogLine {
                    msg,
                    caller: l.caller.clone(),
                    ..l
                })
        })
        .collect()
}

const RSYSLOG_NEWLINE: &str = "#012";

fn split_stripped(raw: &[&str], stripped: &[Stripped<'_>]) -> Vec<LogLine> {
    let stamped = stripped.iter().filter(|s| s.timestamped).count();
    // A log is timestamped when most of its kernel-looking lines are; a handful of stamps
    // in prose (a mail quoting one line) does not make it so.
    let has_timestamps = stamped >= 3;
    let hard = hard_width(raw);

    // Indentation common to each block of unprefixed lines is the paster's, not the kernel's.
    let mut dedent = vec![0usize; raw.len()];
    let mut i = 0;
    while i < stripped.len() {
        if stripped[i].prefixed || stripped[i].msg.trim().is_empty() {
            i += 1;
            continue;
        }
        let start = i;
        while i < stripped.len() && !stripped[i].prefixed && !stripped[i].msg.trim().is_empty() {
            i += 1;
        }
        let min = stripped[start..i]
            .iter()
            .map(|s| indent_of(s.msg))
            .min()
            .unwrap_or(0);
        for d in &mut dedent[start..i] {
            *d = min;
        }
    }

    let mut out: Vec<LogLine> = Vec::with_capacity(raw.len());
    // Whether the previous raw line may continue on this one, and how to join it.
    let mut wrap_join: Option<&'static str> = None;
    for (i, s) in stripped.iter().enumerate() {
        let msg = &s.msg[dedent[i].min(indent_of(s.msg))..];
        let join = wrap_join.take();
        let unstamped_in_stamped = has_timestamps && !s.timestamped && s.kernel;
        if let (Some(sep), Some(prev)) = (join, out.last_mut()) {
            let frag = msg.trim();
            // A soft wrap never follows a complete frame, and user space's own lines
            // (`ccwhold: released`, `systemd[1]: ...`) interleave rather than continue.
            let soft = sep == " ";
            let continues = !frag.is_empty()
                && (!has_timestamps || !s.timestamped)
                && indent_of(msg) < ALIGNED_INDENT
                && !crate::oracle::crash::starts_report(frag)
                && !(soft
                    && (crate::oracle::crash::frames::parse_frame(&prev.msg).is_some()
                        || PROGRAM_LINE.is_match(frag)));
            if continues {
                if soft {
                    // The mailer broke the line at a space it kept: one space joins it.
                    let kept = prev.msg.trim_end().len();
                    prev.msg.truncate(kept);
                }
                prev.msg.push_str(sep);
                prev.msg.push_str(frag);
                wrap_join = next_join(raw[i], hard, has_timestamps, false);
                continue;
            }
        }
        if let Some(prev) = out.last_mut() {
            if LONE_MODULE.is_match(msg)
                && !s.timestamped
                && crate::oracle::crash::frames::parse_frame(&prev.msg).is_some()
                && !prev.msg.trim_end().ends_with(']')
            {
                prev.msg.push(' ');
                prev.msg.push_str(msg.trim());
                continue;
            }
        }
        let kernel = s.kernel && !(unstamped_in_stamped && indent_of(msg) == 0 && !msg.is_empty());
        // An unstamped line aligned under the text continues the record before it.
        let (kernel, caller) = if unstamped_in_stamped && indent_of(msg) >= ALIGNED_INDENT {
            (true, out.last().and_then(|p| p.caller.clone()))
        } else {
            (kernel, s.caller.clone())
        };
        let msg = if unstamped_in_stamped && indent_of(msg) >= ALIGNED_INDENT {
            // dmesg's alignment under the timestamp column, not the kernel's indentation
            msg.trim_start()
        } else {
            msg
        };
        out.push(LogLine {
            number: i + 1,
            msg: msg.to_owned(),
            kernel,
            caller,
        });
        wrap_join = next_join(raw[i], hard, has_timestamps, s.timestamped);
    }
    out
}

/// How the line after `raw` continues it, if it may.
fn next_join(
    raw: &str,
    hard: Option<usize>,
    has_timestamps: bool,
    timestamped: bool,
) -> Option<&'static str> {
    let raw = raw.trim_end_matches('\r');
    let raw_len = raw.chars().count();
    // A mailer that breaks before a token too long for the rest of the line leaves a short
    // line ending in the one space it broke at; terminal padding leaves many.
    let broken_at_space = raw.ends_with(' ') && !raw.ends_with("  ");
    if hard == Some(raw_len) {
        Some("")
    } else if has_timestamps
        && ((timestamped && (SOFT_WRAP_MIN..=SOFT_WRAP_MAX).contains(&raw_len)) || broken_at_space)
    {
        Some(" ")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::{split, strip_prefixes};

    #[test]
    fn strips_every_known_prefix() {
        let cases = [
            ("[   12.345678] Call Trace:", "Call Trace:"),
            ("<4>[   12.345678] Call Trace:", "Call Trace:"),
            ("6,123,4567,-;Call Trace:", "Call Trace:"),
            ("6,123,4567,c;Call Trace:", "Call Trace:"),
            (
                "[ 64.585467] ([<000003ff80179d74>] f+0x1/0x2)",
                "([<000003ff80179d74>] f+0x1/0x2)",
            ),
            ("[    1.0] [T53] WARNING: x", "WARNING: x"),
            ("[    1.000000][  T53] WARNING: x", "WARNING: x"),
            (
                "[    8.782024]  [<000003ffe052115e>] __schedule+0x2be/0x668 ",
                " [<000003ffe052115e>] __schedule+0x2be/0x668 ",
            ),
            ("ccwhold: released", "ccwhold: released"),
            // dmesg -T, -H, delta, -d, iso, -x
            ("[Wed Mar  3 12:34:56 2021] Call Trace:", "Call Trace:"),
            ("[Mar 3 12:34] Call Trace:", "Call Trace:"),
            ("[  +0.000012] Call Trace:", "Call Trace:"),
            ("[<    0.000012>] Call Trace:", "Call Trace:"),
            ("[   12.345678 <    0.000012>] Call Trace:", "Call Trace:"),
            (
                "2021-03-03T12:34:56,123456+01:00 Call Trace:",
                "Call Trace:",
            ),
            ("kern  :warn  : [   12.345678] Call Trace:", "Call Trace:"),
            // syslog, journal, console servers, CI, z/VM
            (
                "Mar  3 12:34:56 lpar1 kernel: [ 1.2] Call Trace:",
                "Call Trace:",
            ),
            ("Mar 03 12:34:56 lpar1 kernel: Call Trace:", "Call Trace:"),
            (
                "2021-03-03T12:34:56.123456+01:00 lpar1 kernel: Call Trace:",
                "Call Trace:",
            ),
            (
                "2021-03-03T12:34:56.1234567Z [   1.2] Call Trace:",
                "Call Trace:",
            ),
            ("[2021-03-03 12:34:56] Call Trace:", "Call Trace:"),
            ("[   12.345678] lpar1 kernel: Call Trace:", "Call Trace:"),
            ("01: Call Trace:", "Call Trace:"),
            ("> [   12.345678] Call Trace:", "Call Trace:"),
            (">> > [   12.345678] Call Trace:", "Call Trace:"),
        ];
        for (raw, want) in cases {
            assert_eq!(strip_prefixes(raw).0, want, "{raw}");
        }
    }

    #[test]
    fn other_programs_in_a_syslog_are_user_space() {
        let log = "Mar  3 12:34:56 h kernel: a\nMar  3 12:34:56 h systemd[1]: b\nMar  3 12:34:57 h kernel: c\n";
        let l = split(log);
        assert_eq!(
            l.iter()
                .map(|l| (l.msg.as_str(), l.kernel))
                .collect::<Vec<_>>(),
            [("a", true), ("b", false), ("c", true)]
        );
    }

    #[test]
    fn joins_wraps_and_dedents_pasted_blocks() {
        // z/VM: hard wrap at 80 columns, no space at the cut.
        let a = "x".repeat(80);
        let log = format!("{a}\nyy\n{a}\nzz\nshort\n");
        let l = split(&log);
        assert_eq!(l.len(), 3);
        assert_eq!(l[0].msg, format!("{a}yy"));
        // a mail client wrapped a long stamped line at a word
        let log = "[ 1.0] a\n[ 1.0] b\n[ 1.0] WARNING: CPU: 0 PID: 1 at drivers/vfio/pci/vfio_pci_core.c:1234\nvfio_foo+0x1/0x2 [vfio]\n[ 1.1] c\n";
        let l = split(log);
        assert_eq!(
            l[2].msg,
            "WARNING: CPU: 0 PID: 1 at drivers/vfio/pci/vfio_pci_core.c:1234 vfio_foo+0x1/0x2 [vfio]"
        );
        assert_eq!(l.len(), 4);
        // a pasted, indented block keeps only the kernel's own indentation
        let l = split("    Call Trace:\n     [<0000000000000002>] 0x2\n");
        assert_eq!(l[0].msg, "Call Trace:");
        assert_eq!(l[1].msg, " [<0000000000000002>] 0x2");
        // unstamped line at column 0 in a stamped log: user space
        let l = split("[ 1.0] a\n[ 1.0] b\n[ 1.0] c\nccwhold: released\n");
        assert!(!l[3].kernel);
        // user space writing after a long kernel line interleaves, it does not continue it
        let l = split("[ 1.0] a\n[ 1.0] b\n[ 1.0]  [<000003ff80179d74>] vfio_ccw_mdev_ioctl+0x84/0x318 [vfio_ccw]\nccwhold: released\n");
        assert_eq!(l.len(), 4);
        assert!(!l[3].kernel);
        // a frame's module wrapped onto its own line
        let l = split(" [<000003ff80179d74>] vfio_ccw_mdev_ioctl+0x84/0x318\n[vfio_ccw]\n");
        assert_eq!(l.len(), 1);
    }
}
