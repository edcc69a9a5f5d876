//! Whether the guest has gone idle around an operation that is still in the kernel. A step
//! that waits for a later step (a bind to io_subchannel unregisters the vfio device and waits
//! for its users to close it) sleeps with the CPUs nearly idle; a slow step under TCG keeps a CPU
//! busy (a css walk, a kmemleak scan, another actor's work, and QEMU's emulation of an
//! instruction, which the guest's CPU timer charges to the guest). A request's `idle_ms`
//! answers the first kind `Blocked` without waiting out its deadline.

use std::collections::VecDeque;

/// How often the CPUs' times are read while an operation with `idle_ms` runs.
pub const POLL_MS: u64 = 50;

/// The share of all CPUs' time, in percent, that still counts as idle. An idle debug guest
/// is 8 % busy (timers, RCU, the agent's heartbeat and log streams; measured 2026-12-05 on
/// 6.12.117 with two CPUs), and this agent's own readings of `/proc/stat` add to it; work
/// an operation waits for keeps at least one CPU busy, half of a two-CPU guest's time.
const NOISE_PERCENT: u64 = 20;

/// The guest's CPU time since boot in USER_HZ ticks, summed over all CPUs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuTimes {
    pub busy: u64,
    pub idle: u64,
}

/// The `cpu` line of `/proc/stat`: user nice system idle iowait irq softirq steal guest
/// guest_nice. Busy is what the guest's CPUs ran (guest time is already in user); idle
/// includes iowait; steal (time the host did not run a CPU) is neither.
pub fn parse_stat(text: &str) -> Option<CpuTimes> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    let at = |i: usize| v.get(i).copied().unwrap_or(0);
    if v.len() < 4 {
        return None;
    }
    Some(CpuTimes {
        busy: at(0) + at(1) + at(2) + at(5) + at(6),
        idle: at(3) + at(4),
    })
}

pub fn read() -> Option<CpuTimes> {
    parse_stat(&std::fs::read_to_string("/proc/stat").ok()?)
}

/// The readings taken since an operation started, and whether the last `idle_ms` of them
/// were idle.
pub struct IdleWatch {
    idle_ms: u64,
    /// (milliseconds since the operation started, times), oldest first; only what the
    /// window still needs is kept.
    seen: VecDeque<(u64, CpuTimes)>,
}

impl IdleWatch {
    pub fn new(idle_ms: u64) -> IdleWatch {
        IdleWatch {
            idle_ms,
            seen: VecDeque::new(),
        }
    }

    /// A reading `at_ms` after the operation started (`None`: unreadable, which breaks the
    /// window). True once the CPUs spent at most [`NOISE_PERCENT`] of the last `idle_ms`
    /// (a whole window, all of it inside the operation) busy.
    pub fn observe(&mut self, at_ms: u64, times: Option<CpuTimes>) -> bool {
        let Some(now) = times else {
            self.seen.clear();
            return false;
        };
        self.seen.push_back((at_ms, now));
        // Keep the newest reading at least `idle_ms` old, and everything after it.
        while self
            .seen
            .get(1)
            .is_some_and(|&(t, _)| at_ms.saturating_sub(t) >= self.idle_ms)
        {
            self.seen.pop_front();
        }
        let Some(&(from, then)) = self.seen.front() else {
            return false;
        };
        if at_ms.saturating_sub(from) < self.idle_ms {
            return false;
        }
        let busy = now.busy.saturating_sub(then.busy);
        let all = busy + now.idle.saturating_sub(then.idle);
        all > 0 && busy * 100 <= all * NOISE_PERCENT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `/proc/stat` of the guest (6.12 s390x, two CPUs), first lines.
    const STAT: &str = "cpu  120 3 450 9000 12 7 5 0 0 0\n\
                        cpu0 60 1 225 4500 6 4 2 0 0 0\n\
                        cpu1 60 2 225 4500 6 3 3 0 0 0\n\
                        intr 1234\n";

    #[test]
    fn the_summed_cpu_line_gives_busy_and_idle_ticks() {
        assert_eq!(
            parse_stat(STAT),
            Some(CpuTimes {
                busy: 120 + 3 + 450 + 7 + 5,
                idle: 9000 + 12
            })
        );
        assert_eq!(parse_stat("intr 1\n"), None);
        assert_eq!(parse_stat("cpu  1 x 3 4\n"), None);
    }

    fn t(busy: u64, idle: u64) -> Option<CpuTimes> {
        Some(CpuTimes { busy, idle })
    }

    /// Two CPUs, 50 ms readings: 10 ticks of CPU time between two readings.
    #[test]
    fn a_whole_window_of_idle_cpus_is_idle_and_busy_cpus_are_not() {
        let mut w = IdleWatch::new(200);
        let (mut busy, mut idle) = (1000, 5000);
        // Busy at first (one CPU running the operation): never idle.
        for i in 0..8 {
            busy += 5;
            idle += 5;
            assert!(!w.observe(i * 50, t(busy, idle)), "busy reading {i}");
        }
        // Then idle: once the last whole 200 ms window was at most 20 % busy (at 500 its
        // first 50 ms still had the operation's last busy readings: 5 ticks of 40).
        let mut answered = None;
        for i in 8..20 {
            idle += 10;
            if w.observe(i * 50, t(busy, idle)) && answered.is_none() {
                answered = Some(i * 50);
            }
        }
        assert_eq!(answered, Some(500));
    }

    #[test]
    fn an_idle_debug_guest_is_idle_and_one_cpu_at_half_time_is_not() {
        let mut quiet = IdleWatch::new(200);
        let mut slow = IdleWatch::new(200);
        for i in 0..=4u64 {
            // The idle debug guest's 8 %, as measured. One CPU at half its time: a quarter
            // of two CPUs', work going on.
            quiet.observe(i * 50, t(8 * i / 10, 10 * i - 8 * i / 10));
            slow.observe(i * 50, t(25 * i / 10, 10 * i - 25 * i / 10));
        }
        assert!(quiet.observe(250, t(4, 46)));
        assert!(!slow.observe(250, t(12, 38)));
    }

    #[test]
    fn an_unreadable_reading_starts_the_window_again() {
        let mut w = IdleWatch::new(100);
        assert!(!w.observe(0, t(0, 0)));
        assert!(!w.observe(50, t(0, 10)));
        assert!(!w.observe(100, None));
        assert!(!w.observe(150, t(0, 30)));
        assert!(!w.observe(200, t(0, 40)));
        assert!(w.observe(250, t(0, 50)));
    }
}
