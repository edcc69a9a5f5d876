//! Where a program's wall time went, phase by phase.

use std::time::Duration;

/// Where a program's wall time went, for `CCWRIG_LOG=ccwrig::run=debug`.
pub(super) struct Phases {
    last: std::time::Instant,
    done: Vec<(&'static str, Duration)>,
}

impl Default for Phases {
    fn default() -> Self {
        Phases {
            last: std::time::Instant::now(),
            done: vec![],
        }
    }
}

impl Phases {
    pub(super) fn end(&mut self, name: &'static str) {
        let now = std::time::Instant::now();
        self.done.push((name, now - self.last));
        self.last = now;
    }

    pub(super) fn text(&self) -> String {
        self.done
            .iter()
            .map(|(n, d)| format!("{n} {} ms", d.as_millis()))
            .collect::<Vec<_>>()
            .join(", ")
    }
}
