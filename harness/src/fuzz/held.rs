//! Programs that shut the guest down, held back while a worker's kmemleak batch is open.
//!
//! A shutdown ends the VM, so the worker reads the batch's leaks before one (a reading is two
//! scans of all memory and kmemleak's minimum age: ~13 s on debug). Guided campaigns mutate
//! kept inputs that end in a power-off, and then many programs shut down: on debug (seed 1, 4
//! minutes, 2026-12-05) 15 programs ran in 7 VMs, each VM ended by a program's power-off, and
//! each of those forced a reading of a batch of one or two programs.
//! Held until the batch has been read, they run back to back, each in the fresh VM the one
//! before it left, and the batch reads once for up to its full size again.

use std::collections::VecDeque;

#[derive(Debug)]
pub struct HeldShutdowns<T> {
    queue: VecDeque<T>,
    cap: usize,
}

impl<T> HeldShutdowns<T> {
    /// Holds up to `cap` programs; one more runs at once (and reads the batch before it).
    pub fn new(cap: usize) -> Self {
        Self {
            queue: VecDeque::new(),
            cap,
        }
    }

    /// A newly chosen program: given back to run now, or held (`None`) when it shuts the guest
    /// down while `pending` programs wait for the batch's reading and there is room.
    pub fn offer(&mut self, program: T, shuts_down: bool, pending: usize) -> Option<T> {
        if shuts_down && pending > 0 && self.queue.len() < self.cap {
            self.queue.push_back(program);
            None
        } else {
            Some(program)
        }
    }

    /// The held program to run next: once no program waits for a reading, or when no new
    /// program will come (`draining`), oldest first.
    pub fn take_ready(&mut self, pending: usize, draining: bool) -> Option<T> {
        if pending == 0 || draining {
            self.queue.pop_front()
        } else {
            None
        }
    }

    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shutdown_waits_for_the_open_batch_and_others_run_at_once() {
        let mut h = HeldShutdowns::new(2);
        assert_eq!(h.offer("plain", false, 3), Some("plain"));
        assert_eq!(h.offer("off-1", true, 3), None);
        assert_eq!(h.offer("off-2", true, 4), None);
        // Full: the next one runs now, and the worker reads the batch before it.
        assert_eq!(h.offer("off-3", true, 5), Some("off-3"));
        assert_eq!(h.len(), 2);
        // Nothing is ready while the batch is open.
        assert_eq!(h.take_ready(5, false), None);
        // Read: the held ones run, oldest first.
        assert_eq!(h.take_ready(0, false), Some("off-1"));
        assert_eq!(h.take_ready(0, false), Some("off-2"));
        assert_eq!(h.take_ready(0, false), None);
        assert!(h.is_empty());
    }

    #[test]
    fn with_no_batch_open_a_shutdown_runs_at_once() {
        let mut h = HeldShutdowns::new(8);
        // A kernel without kmemleak never has programs pending.
        assert_eq!(h.offer("off", true, 0), Some("off"));
        assert!(h.is_empty());
    }

    #[test]
    fn a_campaign_that_generates_no_more_runs_what_it_held() {
        let mut h = HeldShutdowns::new(8);
        assert_eq!(h.offer("off", true, 1), None);
        assert_eq!(h.take_ready(1, true), Some("off"));
    }
}
