//! Tasks the kernel left in uninterruptible sleep: the `d_state` list of two agent snapshots
//! (`images/agent/src/ops/snapshot.rs`) taken a moment apart at the end of a run. A thread
//! in D state at both, waiting in the same place, is waiting for something that will not
//! come: a hang no step shows (a kernel worker), which also keeps the guest from powering
//! off. One snapshot is not enough: a worker may be in the middle of a short wait.

use ccwrig_proto::data::Snapshot;
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StuckTask {
    pub tid: u64,
    pub comm: String,
    /// The kernel function it sleeps in (`/proc/<pid>/task/<tid>/wchan`).
    pub wchan: String,
}

impl StuckTask {
    /// A title that names the place, not the worker: kworker names and tids change per boot.
    pub fn title(&self) -> String {
        format!("task stuck in {}", self.wchan)
    }
}

/// The D-state threads of one snapshot.
pub fn d_state(snapshot: &Snapshot) -> Vec<StuckTask> {
    snapshot
        .d_state
        .iter()
        .filter_map(|t| {
            Some(StuckTask {
                tid: t.tid?,
                comm: t.comm.clone(),
                wchan: t
                    .wchan
                    .as_deref()
                    .filter(|w| !w.is_empty() && *w != "0")
                    .unwrap_or("?")
                    .to_owned(),
            })
        })
        .collect()
}

/// Threads in D state in both snapshots, in the same function.
pub fn still_stuck(first: &Snapshot, second: &Snapshot) -> Vec<StuckTask> {
    let later = d_state(second);
    d_state(first)
        .into_iter()
        .filter(|t| later.contains(t))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn snap(v: serde_json::Value) -> Snapshot {
        serde_json::from_value(v).expect("a snapshot as the agent writes it")
    }

    // What the agent reported at the end of unbind_during_ccw_auto_online runs on 6.12.117
    // (the worker that never came back from setting the device online) next to a short
    // wait that ended between the two checks.
    #[test]
    fn only_threads_stuck_in_the_same_place_count() {
        let first = snap(json!({"d_state": [
            {"tid": 26, "comm": "kworker/u9:0", "wchan": "ccw_device_set_online"},
            {"tid": 41, "comm": "kworker/0:2", "wchan": "css_sch_todo"},
            {"tid": 50, "comm": "sh", "wchan": "pipe_read"},
        ]}));
        let second = snap(json!({"d_state": [
            {"tid": 26, "comm": "kworker/u9:0", "wchan": "ccw_device_set_online"},
            {"tid": 50, "comm": "sh", "wchan": "do_wait"},
        ]}));
        let stuck = still_stuck(&first, &second);
        assert_eq!(stuck.len(), 1);
        assert_eq!(stuck[0].title(), "task stuck in ccw_device_set_online");
        assert_eq!(stuck[0].comm, "kworker/u9:0");
    }

    #[test]
    fn snapshots_without_the_list_have_no_stuck_tasks() {
        assert!(still_stuck(&snap(json!({})), &snap(json!({"d_state": []}))).is_empty());
        assert!(d_state(&snap(json!({"d_state": [{"comm": "x"}]}))).is_empty());
    }
}
