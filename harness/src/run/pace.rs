//! The booted kernel's pace: deadlines and waits are written for the fast profile and
//! scaled to the kernel that runs.

use std::time::Duration;

/// How much slower than the fast profile the booted kernel runs (its profile's slowdown):
/// every deadline a scenario states and every wait the runner makes is written for the fast
/// kernel and scaled by this, so a slow sanitizer kernel is not mistaken for a hung one.
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    pub slowdown: u32,
}

impl Pace {
    pub const FAST: Pace = Pace { slowdown: 1 };

    pub fn ms(self, fast_ms: u64) -> u64 {
        fast_ms.saturating_mul(u64::from(self.slowdown.max(1)))
    }

    pub fn of(self, fast: Duration) -> Duration {
        fast.saturating_mul(self.slowdown.max(1))
    }
}
