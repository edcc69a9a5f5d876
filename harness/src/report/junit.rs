//! `ccwrig run --junit FILE`.

use std::path::Path;
use std::time::Duration;

use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};

use crate::run::RunResult;

/// Writes one test case per scenario; a harness error (the VM never booted) is an error case,
/// a failed verdict a failure case whose message is the first finding.
pub fn write(
    path: &Path,
    results: &[(String, Result<RunResult, String>)],
    total: Duration,
) -> std::io::Result<()> {
    let mut suite = TestSuite::new("ccwrig scenarios");
    for (name, r) in results {
        let (status, time) = match r {
            Ok(res) if res.verdict.passed => (TestCaseStatus::success(), res.wall_ms),
            Ok(res) => {
                let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
                s.set_message(res.verdict.line());
                let details: Vec<String> = res
                    .verdict
                    .findings
                    .iter()
                    .map(|f| format!("{}\n{}", f.title, f.detail))
                    .collect();
                s.set_description(format!(
                    "{}\nartifacts: {}",
                    details.join("\n\n"),
                    res.run_dir.display()
                ));
                (s, res.wall_ms)
            }
            Err(e) => {
                let mut s = TestCaseStatus::non_success(NonSuccessKind::Error);
                s.set_message(e.clone());
                (s, 0)
            }
        };
        let mut case = TestCase::new(name.clone(), status);
        case.set_time(Duration::from_millis(time));
        suite.add_test_case(case);
    }
    let mut report = Report::new("ccwrig");
    report.set_time(total);
    report.add_test_suite(suite);
    let xml = report.to_string().map_err(std::io::Error::other)?;
    std::fs::write(path, xml)
}
