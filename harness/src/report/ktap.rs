//! `ccwrig run --ktap FILE`: KTAP version 1 (the kernel's Documentation/dev-tools/ktap.rst).
//!
//! One test per scenario; a judged scenario has one subtest per oracle (crash, steps, hang,
//! guest_alive, fsm, dmesg, leaks), each preceded by its findings as `#` diagnostic lines. A
//! scenario the harness could not run or judge is a result line with the `ERROR` directive,
//! after `# ERROR:` lines with the whole message. A known finding (the scenario's documented
//! kernel bug showed) makes its oracles `ok ... # XFAIL`, as kselftest prints an expected
//! failure. KTAP v2 metadata lines (`#:ktap_test:` ...) sit in each test's header, where a
//! v1 parser reads them as diagnostics.
//!
//! Some consumers are strict where the spec is not: kunit.py's parser stops reading at three
//! console phrases anywhere in a line, and takes no `#` in a test name; see [`diagnostic`] and
//! [`test_name`].

use std::fmt::Write as _;

use super::outcome::{Ending, FindingFacts, Oracle, ScenarioOutcome};

/// Lines of one finding's detail shown; the rest is in the run directory.
const DETAIL_LINES: usize = 40;

/// Phrases that make kunit.py (tools/testing/kunit/kunit_parser.py, `KTAP_END`) stop reading,
/// wherever they occur in a line, and what they become in a diagnostic.
const PARSER_STOPS: [(&str, &str); 3] = [
    ("List of all partitions:", "List of all partitions -"),
    (
        "Kernel panic - not syncing: VFS:",
        "Kernel panic - not syncing - VFS:",
    ),
    ("reboot: System halted", "reboot - System halted"),
];

/// A test name: anything but `#` and line breaks (ktap.rst, "Test case result lines").
pub fn test_name(s: &str) -> String {
    let n: String = s
        .chars()
        .map(|c| {
            if c == '#' || c == '\n' || c == '\r' {
                '_'
            } else {
                c
            }
        })
        .collect();
    let n = n.trim().to_string();
    if n.is_empty() {
        "unnamed".into()
    } else {
        n
    }
}

/// One line of diagnostic text (no line breaks, no parser stop phrase).
fn one_line(s: &str) -> String {
    let mut l: String = s
        .chars()
        .map(|c| if c == '\n' || c == '\r' { ' ' } else { c })
        .collect();
    for (stop, safe) in PARSER_STOPS {
        if l.contains(stop) {
            l = l.replace(stop, safe);
        }
    }
    l.trim_end().to_string()
}

/// `# text` lines at `indent`, one per line of `text`.
pub fn diagnostic(out: &mut String, indent: &str, text: &str) {
    for l in text.lines() {
        let l = one_line(l);
        if l.is_empty() {
            let _ = writeln!(out, "{indent}#");
        } else {
            let _ = writeln!(out, "{indent}# {l}");
        }
    }
}

fn metadata(out: &mut String, indent: &str, key: &str, value: &str) {
    let _ = writeln!(out, "{indent}#:ktap_{key}: {}", one_line(value));
}

fn finding_lines(out: &mut String, indent: &str, f: &FindingFacts) {
    // Leak titles already start with their kind (`leak: ...`).
    let head = if f.title.starts_with(&format!("{}:", f.kind)) {
        f.title.clone()
    } else {
        format!("{}: {}", f.kind, f.title)
    };
    diagnostic(out, indent, &head);
    let lines: Vec<&str> = f.detail.lines().collect();
    for l in lines.iter().take(DETAIL_LINES) {
        diagnostic(out, indent, &format!("  {l}"));
    }
    if lines.len() > DETAIL_LINES {
        diagnostic(
            out,
            indent,
            &format!(
                "  ... {} more lines in the run directory",
                lines.len() - DETAIL_LINES
            ),
        );
    }
}

/// Renders the whole run.
pub fn render(outcomes: &[ScenarioOutcome]) -> String {
    let mut out = String::from("KTAP version 1\n");
    metadata(&mut out, "", "test", "ccwrig");
    metadata(&mut out, "", "arch", "s390");
    let _ = writeln!(out, "1..{}", outcomes.len());
    for (i, o) in outcomes.iter().enumerate() {
        scenario(&mut out, i + 1, o);
    }
    out
}

fn scenario(out: &mut String, number: usize, o: &ScenarioOutcome) {
    let name = test_name(&o.name);
    let kernel = o.kernel.as_ref().map(|k| {
        format!(
            "kernel {} ({} profile{}), {}",
            k.release.as_deref().unwrap_or("of unknown release"),
            k.profile.as_deref().unwrap_or("unknown"),
            match k.patches.len() {
                0 => String::new(),
                n => format!(
                    ", {n} patch(es) from {}",
                    k.patches_from.as_deref().unwrap_or("?")
                ),
            },
            k.source.as_deref().unwrap_or("unknown source")
        )
    });
    match &o.ending {
        Ending::Judged {
            passed,
            known_finding,
            findings,
            seed,
            ..
        } => {
            let sub = "  ";
            let _ = writeln!(out, "{sub}KTAP version 1");
            // kunit.py names a subtest from this line before its result line arrives.
            let _ = writeln!(out, "{sub}# Subtest: {name}");
            metadata(out, sub, "test", &name);
            if let Some(f) = &o.file {
                metadata(out, sub, "test_file", f);
            }
            if let Some(d) = &o.run_dir {
                metadata(out, sub, "log_file", &format!("{d}/console.log"));
            }
            metadata(
                out,
                sub,
                "duration",
                &format!("{:.3}s", o.wall_ms as f64 / 1000.0),
            );
            let mut oracles: Vec<Oracle> = Oracle::JUDGED.to_vec();
            if findings.iter().any(|f| f.oracle() == Oracle::Other) {
                oracles.push(Oracle::Other);
            }
            // A failed verdict with no finding still fails one subtest, so that a parser that
            // sums the subtests agrees with the scenario's result line.
            let unexplained = !passed && findings.is_empty();
            let plan = oracles.len() + usize::from(unexplained);
            let _ = writeln!(out, "{sub}1..{plan}");
            for (j, oracle) in oracles.iter().enumerate() {
                let mine: Vec<&FindingFacts> =
                    findings.iter().filter(|f| f.oracle() == *oracle).collect();
                for f in &mine {
                    finding_lines(out, sub, f);
                }
                let n = j + 1;
                let oname = oracle.name();
                let line = match (mine.is_empty(), known_finding, *passed) {
                    (true, _, _) => format!("ok {n} {oname}"),
                    (false, Some(k), true) => {
                        format!("ok {n} {oname} # XFAIL known finding: {}", one_line(k))
                    }
                    (false, _, _) if mine.iter().all(|f| f.harness_side()) => {
                        format!("not ok {n} {oname} # ERROR {}", one_line(&mine[0].title))
                    }
                    (false, _, _) => format!("not ok {n} {oname}"),
                };
                let _ = writeln!(out, "{sub}{line}");
            }
            if unexplained {
                diagnostic(out, sub, "the verdict failed without a finding");
                let _ = writeln!(out, "{sub}not ok {plan} verdict");
            }
            if let Some(k) = &kernel {
                diagnostic(out, "", k);
            }
            diagnostic(out, "", &format!("seed {seed}"));
            if let Some(k) = known_finding {
                diagnostic(out, "", &format!("known finding: {k}"));
            }
            if !passed {
                if let Some(d) = &o.run_dir {
                    diagnostic(out, "", &format!("artifacts: {d}"));
                }
                if let Some(f) = &o.file {
                    diagnostic(out, "", &format!("rerun: ccwrig run --seed {seed} {f}"));
                }
            }
            let ok = if *passed { "ok" } else { "not ok" };
            let _ = writeln!(out, "{ok} {number} {name}");
        }
        Ending::NotRun { error, .. } | Ending::HarnessError { error } => {
            metadata(out, "", "test", &name);
            if let Some(f) = &o.file {
                metadata(out, "", "test_file", f);
            }
            if let Some(k) = &kernel {
                diagnostic(out, "", k);
            }
            for l in error.lines() {
                diagnostic(out, "", &format!("ERROR: {l}"));
            }
            if let Some(d) = &o.run_dir {
                diagnostic(out, "", &format!("artifacts: {d}"));
            }
            let first = error.lines().next().unwrap_or("harness error");
            let _ = writeln!(out, "not ok {number} {name} # ERROR {}", one_line(first));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::outcome::KernelFacts;

    fn judged(
        name: &str,
        passed: bool,
        known: Option<&str>,
        f: &[(&str, &str, &str)],
    ) -> ScenarioOutcome {
        ScenarioOutcome {
            name: name.into(),
            file: Some(format!("scenarios/{name}.toml")),
            run_dir: Some(format!("runs/x/{name}")),
            started: None,
            wall_ms: 12_345,
            kernel: Some(KernelFacts {
                release: Some("6.12.117".into()),
                profile: Some("fast".into()),
                build_key: "k".into(),
                ..Default::default()
            }),
            ending: Ending::Judged {
                passed,
                known_finding: known.map(str::to_string),
                findings: f
                    .iter()
                    .map(|(k, t, d)| FindingFacts::new(k, t, d))
                    .collect(),
                seed: 7,
                boot_to_ready_ms: 2000,
            },
        }
    }

    #[test]
    fn a_clean_scenario_is_seven_passing_oracles() {
        let k = render(&[judged("basic_lifecycle", true, None, &[])]);
        let want = "KTAP version 1
#:ktap_test: ccwrig
#:ktap_arch: s390
1..1
  KTAP version 1
  # Subtest: basic_lifecycle
  #:ktap_test: basic_lifecycle
  #:ktap_test_file: scenarios/basic_lifecycle.toml
  #:ktap_log_file: runs/x/basic_lifecycle/console.log
  #:ktap_duration: 12.345s
  1..7
  ok 1 crash
  ok 2 steps
  ok 3 hang
  ok 4 guest_alive
  ok 5 fsm
  ok 6 dmesg
  ok 7 leaks
# kernel 6.12.117 (fast profile), unknown source
# seed 7
ok 1 basic_lifecycle
";
        assert_eq!(k, want);
    }

    #[test]
    fn findings_are_diagnostics_before_their_oracle_and_fail_it() {
        let k = render(&[judged(
            "unplug_request_reset",
            false,
            None,
            &[
                (
                    "crash",
                    "illegal operation in vfio_ccw_mdev_ioctl",
                    "Call Trace:\n [<2>] 0x2",
                ),
                ("leak", "leak: vfio/0 still exists", ""),
            ],
        )]);
        assert!(k.contains(
            "  # crash: illegal operation in vfio_ccw_mdev_ioctl\n  #   Call Trace:\n  #    [<2>] 0x2\n  not ok 1 crash\n"
        ), "{k}");
        assert!(
            k.contains("  # leak: vfio/0 still exists\n  not ok 7 leaks\n"),
            "{k}"
        );
        assert!(k.contains("# rerun: ccwrig run --seed 7 scenarios/unplug_request_reset.toml\nnot ok 1 unplug_request_reset\n"), "{k}");
    }

    #[test]
    fn known_findings_are_expected_failures_and_trace_loss_is_an_error() {
        let k = render(&[judged(
            "reset_vs_io",
            true,
            Some("FSM: impossible_state on 0.0.0000 at 1.0"),
            &[(
                "fsm_violation",
                "FSM: impossible_state on 0.0.0000 at 1.0",
                "",
            )],
        )]);
        assert!(
            k.contains(
                "  ok 5 fsm # XFAIL known finding: FSM: impossible_state on 0.0.0000 at 1.0\n"
            ),
            "{k}"
        );
        assert!(k.ends_with("ok 1 reset_vs_io\n"), "{k}");
        let k = render(&[judged(
            "t",
            false,
            None,
            &[(
                "trace_lost",
                "FSM trace incomplete: the ring buffer dropped events",
                "",
            )],
        )]);
        assert!(
            k.contains("  not ok 5 fsm # ERROR FSM trace incomplete"),
            "{k}"
        );
    }

    #[test]
    fn harness_errors_carry_the_error_directive_and_the_whole_message() {
        let o = ScenarioOutcome {
            name: "basic_lifecycle".into(),
            file: None,
            run_dir: Some("runs/x/basic_lifecycle".into()),
            started: None,
            wall_ms: 0,
            kernel: None,
            ending: Ending::HarnessError {
                error: "boot failed: agent never connected\nconsole: (empty)".into(),
            },
        };
        let k = render(&[o]);
        assert!(
            k.contains("# ERROR: boot failed: agent never connected\n# ERROR: console: (empty)\n"),
            "{k}"
        );
        assert!(
            k.ends_with("not ok 1 basic_lifecycle # ERROR boot failed: agent never connected\n"),
            "{k}"
        );
    }

    #[test]
    fn names_and_diagnostics_cannot_break_a_parser() {
        assert_eq!(test_name("a#b\nc"), "a_b_c");
        assert_eq!(test_name("  "), "unnamed");
        let mut out = String::new();
        diagnostic(&mut out, "  ", "[ 1.0] reboot: System halted\r\nnext");
        assert_eq!(out, "  # [ 1.0] reboot - System halted\n  # next\n");
    }

    #[test]
    fn long_details_are_cut_with_a_pointer() {
        let detail: String = (0..100).map(|i| format!("line {i}\n")).collect();
        let k = render(&[judged(
            "t",
            false,
            None,
            &[("hang", "rescan by a still blocked", &detail)],
        )]);
        assert!(
            k.contains("  #   line 39\n  #   ... 60 more lines in the run directory\n"),
            "{k}"
        );
        assert!(!k.contains("line 40\n"));
    }
}
