//! What the runner writes down about every step: `steps.jsonl`, one JSON object per line, in
//! the order results arrived.

use std::sync::Mutex;

use ccwrig_proto::{Op, OpResult, Outcome};
use serde::Serialize;

use crate::rundir::{Appender, Artifact, RunDir};

/// The phase a step ran in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Setup,
    Race,
    Teardown,
    Check,
}

#[derive(Debug, Clone, Serialize)]
pub struct StepRecord {
    pub phase: Phase,
    pub actor: String,
    /// Which repetition of the race (0 outside it).
    pub rep: u32,
    /// Index in the actor's step list.
    pub index: usize,
    /// Line in the scenario file (0 for generated steps).
    pub line: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    pub op: Op,
    /// Host milliseconds since the VM's agent connected, at send and at answer.
    pub sent_ms: u64,
    pub answered_ms: u64,
    pub jitter_ms: u64,
    pub outcome: Outcome,
    /// For an operation that answered `blocked`: how it finished (None: still blocked at the
    /// end of the run, which is a hang).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub late: Option<Outcome>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub late_ms: Option<u64>,
    pub guest_start_us: u64,
    pub guest_duration_us: u64,
    #[serde(skip_serializing_if = "serde_json::Value::is_null")]
    pub data: serde_json::Value,
    pub expected: Vec<String>,
    pub matched: bool,
    /// Agent request id (to pair a late result with its step).
    #[serde(skip)]
    pub request_id: Option<u64>,
    /// The deadline the step was sent with (its stated or default deadline, scaled to the
    /// booted kernel's pace).
    pub deadline_ms: u64,
    /// What KCOV saw of the step (a cover kernel), its late result's when it was blocked.
    /// The PCs go to `coverage.json`; here only their counts and whether the buffer filled,
    /// so that a step that lost coverage can be named.
    #[serde(
        rename = "kcov",
        serialize_with = "kcov_summary",
        skip_serializing_if = "Option::is_none"
    )]
    pub cover: Option<ccwrig_proto::Cover>,
    /// The step's `fail_nth`, and whether that fault point was reached and failed (`None`:
    /// the kernel cannot inject faults).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail_nth: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<bool>,
}

fn kcov_summary<S: serde::Serializer>(
    cover: &Option<ccwrig_proto::Cover>,
    s: S,
) -> Result<S::Ok, S::Error> {
    use ccwrig_proto::Cover;
    let v = match cover {
        Some(Cover::Pcs { pcs, hits, full }) => {
            serde_json::json!({"pcs": pcs.len(), "hits": hits, "full": full})
        }
        Some(Cover::Unavailable { reason }) => serde_json::json!({ "unavailable": reason }),
        None => serde_json::Value::Null,
    };
    v.serialize(s)
}

#[cfg(test)]
impl StepRecord {
    /// A race step of actor `a`, answered at once and as expected; a test sets the fields it
    /// is about with `..StepRecord::for_test(op, outcome)`.
    pub(crate) fn for_test(op: Op, outcome: Outcome) -> StepRecord {
        StepRecord {
            phase: Phase::Race,
            actor: "a".into(),
            rep: 0,
            index: 0,
            line: 0,
            label: None,
            op,
            sent_ms: 0,
            answered_ms: 0,
            jitter_ms: 0,
            outcome,
            late: None,
            late_ms: None,
            guest_start_us: 0,
            guest_duration_us: 0,
            data: serde_json::Value::Null,
            expected: vec![],
            matched: true,
            request_id: None,
            deadline_ms: 1500,
            cover: None,
            fail_nth: None,
            fault: None,
        }
    }
}

impl StepRecord {
    pub fn from_result(result: &OpResult) -> (Outcome, u64, u64, serde_json::Value) {
        (
            result.outcome.clone(),
            result.start_us,
            result.duration_us,
            result.data.clone(),
        )
    }

    /// One line for the terminal and the text report.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "{:>7} ms {:<8} {:<18} {}",
            self.sent_ms,
            self.actor,
            self.op.name(),
            self.outcome
        );
        if let Some(l) = &self.late {
            s.push_str(&format!(", then {l}"));
        }
        if !self.matched {
            s.push_str(&format!("   <-- expected {}", self.expected.join(" | ")));
        }
        s
    }
}

/// Appends records to `steps.jsonl` as they happen (a killed run keeps what it did).
pub struct Recorder {
    file: Appender,
    records: Mutex<Vec<StepRecord>>,
}

impl Recorder {
    pub fn new(dir: &RunDir) -> Recorder {
        Recorder {
            file: dir.appender(Artifact::Steps),
            records: Mutex::new(Vec::new()),
        }
    }

    fn write(&self, value: &impl Serialize) {
        match serde_json::to_string(value) {
            Ok(line) => self.file.line(&line),
            // A step record is plain data; this cannot fail short of a serde bug.
            Err(e) => tracing::error!("steps.jsonl: unserialisable record: {e}"),
        }
    }

    pub fn push(&self, r: StepRecord) -> usize {
        self.write(&r);
        let mut g = self.records.lock().unwrap_or_else(|p| p.into_inner());
        g.push(r);
        g.len() - 1
    }

    /// Records a blocked step's late outcome (also as its own line in steps.jsonl) and
    /// whether the step, finishing so, did what the scenario asked.
    /// The late result's coverage replaces the `Blocked` answer's, which had none.
    pub fn set_late(
        &self,
        idx: usize,
        late: Outcome,
        cover: Option<ccwrig_proto::Cover>,
        at_ms: u64,
        matched: bool,
    ) {
        let mut g = self.records.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(r) = g.get_mut(idx) {
            r.late = Some(late.clone());
            if cover.is_some() {
                r.cover = cover;
            }
            r.late_ms = Some(at_ms);
            r.matched = matched;
            self.write(&serde_json::json!({"late_of": {"actor": r.actor, "rep": r.rep, "index": r.index, "op": r.op.name()}, "outcome": late, "at_ms": at_ms}));
        }
    }

    pub fn records(&self) -> Vec<StepRecord> {
        self.records.lock().map(|g| g.clone()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ccwrig_proto::{Cover, PcSet};

    fn line(cover: Option<Cover>) -> serde_json::Value {
        let mut r = StepRecord::for_test(
            Op::Cleanup {
                online_wait_ms: 2000,
                rest: Default::default(),
            },
            Outcome::Ok,
        );
        r.cover = cover;
        serde_json::to_value(&r).expect("serializes")
    }

    #[test]
    fn a_step_line_names_its_kcov_counts_and_a_full_buffer_but_not_the_pcs() {
        let pcs = PcSet::from_trace([0x10_0000, 0x10_0040, 0x10_0000]);
        let v = line(Some(Cover::Pcs {
            pcs,
            hits: 3,
            full: true,
        }));
        assert_eq!(
            v["kcov"],
            serde_json::json!({"pcs": 2, "hits": 3, "full": true})
        );
        let v = line(Some(Cover::Unavailable {
            reason: "no kcov".into(),
        }));
        assert_eq!(v["kcov"], serde_json::json!({"unavailable": "no kcov"}));
        assert!(line(None).get("kcov").is_none());
    }
}
