use super::FsmReport;
use std::fmt::Write;

/// The `fsm.txt` of a run: per subchannel, one line per traced event
/// `time  task-pid  STATE --EVENT--> NEXT`, violations marked `!!` with their rule.
pub fn render(report: &FsmReport) -> String {
    let mut out = String::new();
    if !report.lost.is_empty() {
        let per_cpu: Vec<String> = report
            .lost
            .iter()
            .map(|l| match l.count {
                Some(n) => format!("CPU {}: {n}", l.cpu),
                None => format!("CPU {}: uncounted", l.cpu),
            })
            .collect();
        let _ = writeln!(
            out,
            "!! the ring buffer dropped events ({}): the replay below is incomplete\n",
            per_cpu.join(", ")
        );
    }
    if report.timelines.is_empty() {
        out.push_str("no vfio_ccw FSM events traced\n");
    }
    for (schid, timeline) in &report.timelines {
        let _ = writeln!(out, "subchannel {schid}");
        for t in timeline {
            let mark = if t.violation.is_some() { "!!" } else { "  " };
            let who = format!("{}-{}", t.task, t.pid);
            let _ = writeln!(
                out,
                "{mark} {:>14.6}  {who:<20} {} --{}--> {}  ({})",
                t.ts,
                t.state,
                t.event,
                t.next_state(),
                t.handler
            );
            if let Some(n) = &t.note {
                let _ = writeln!(out, "   {:>14}  {n}", "");
            }
            if let Some(v) = &t.violation {
                let _ = writeln!(
                    out,
                    "!! {:>14}  violation {}: {}",
                    "",
                    v.rule.name(),
                    v.message
                );
            }
        }
        if let Some(f) = report.final_states.get(schid) {
            let _ = writeln!(out, "   final state: {f}");
        }
        out.push('\n');
    }
    let _ = writeln!(out, "violations: {}", report.violations.len());
    out
}
