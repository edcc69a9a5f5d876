//! Strips what transports and printk add in front of a kernel message, so the patterns see
//! the message as the kernel formatted it.

use regex::Regex;
use std::sync::LazyLock;

// One alternation per prefix kind; applied repeatedly because they stack
// (`<4>[   1.2] [T53] msg`).
static PREFIX: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(concat!(
        r"^(?:",
        r"<\d{1,2}>",           // syslog level from /dev/kmsg readers or `dmesg -r`
        r"|\d+,\d+,\d+,[^;]*;", // /dev/kmsg record header: level,seq,usec,flags;
        r"|\[\s*\d+\.\d+\]\s?", // CONFIG_PRINTK_TIME
        r"|\[\s*[TC]\d+\]\s?",  // CONFIG_PRINTK_CALLER
        r")"
    ))
    .expect("static regex")
});

static TIMESTAMP: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\[\s*\d+\.\d+\]").expect("static regex"));

/// A console line with its kernel prefixes removed.
#[derive(Debug, Clone)]
pub(crate) struct LogLine<'a> {
    /// 1-based line number in the input.
    pub number: usize,
    pub msg: &'a str,
    /// Whether the raw line carried a printk timestamp. In a timestamped log, a line
    /// without one is user space writing to the console, never part of a kernel report.
    pub timestamped: bool,
}

pub(crate) fn strip_prefixes(raw: &str) -> (&str, bool) {
    let mut s = raw.trim_end_matches(['\r', '\n']);
    let timestamped = TIMESTAMP.find(s).is_some_and(|m| m.start() < 24);
    while let Some(m) = PREFIX.find(s) {
        if m.end() == 0 {
            break;
        }
        s = &s[m.end()..];
    }
    (s, timestamped)
}

pub(crate) fn split(log: &str) -> Vec<LogLine<'_>> {
    log.lines()
        .enumerate()
        .map(|(i, raw)| {
            let (msg, timestamped) = strip_prefixes(raw);
            LogLine {
                number: i + 1,
                msg,
                timestamped,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::strip_prefixes;

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
            (
                "[    8.782024]  [<000003ffe052115e>] __schedule+0x2be/0x668 ",
                " [<000003ffe052115e>] __schedule+0x2be/0x668 ",
            ),
            ("ccwhold: released", "ccwhold: released"),
        ];
        for (raw, want) in cases {
            assert_eq!(strip_prefixes(raw).0, want, "{raw}");
        }
    }
}
