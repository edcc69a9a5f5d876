//! `ccwrig triage LOGFILE...`: the crash detector on saved console logs from any machine.
//! One JSON object per report on stdout; nothing for a clean log.

use std::io::Write;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct TriageArgs {
    /// Console logs (any kernel, any machine; timestamps and kmsg prefixes are fine).
    #[arg(required = true)]
    pub logs: Vec<PathBuf>,
}

pub fn run(a: TriageArgs) -> anyhow::Result<std::process::ExitCode> {
    let mut out = std::io::stdout().lock();
    let mut failed = false;
    for log in &a.logs {
        match ccwrig::oracle::triage::triage(log) {
            Ok(lines) => {
                for l in lines {
                    writeln!(out, "{}", serde_json::to_string(&l)?)?;
                }
            }
            Err(e) => {
                eprintln!("ccwrig: {e}");
                failed = true;
            }
        }
    }
    Ok(if failed {
        std::process::ExitCode::from(2)
    } else {
        std::process::ExitCode::SUCCESS
    })
}
