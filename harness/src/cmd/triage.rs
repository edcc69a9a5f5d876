//! `ccwrig triage LOGFILE... [--known DIR...]`: the crash detector on saved console logs from
//! any machine, and whether ccwrig already knows each crash. One JSON object per report on
//! stdout (nothing for a clean log); on stderr, for people, the known finding and the
//! command that reproduces it, or that none is known.

use ccwrig::oracle::triage::{load_known, triage_against, KnownFinding, TriageLine};
use std::io::Write;
use std::path::PathBuf;

/// Where known findings are looked for when `--known` is not given (those that exist): the
/// findings kept in the repository and `ccwrig fuzz`'s default corpus.
const DEFAULT_KNOWN: &[&str] = &["scenarios/findings", "fuzz-corpus"];

#[derive(clap::Args)]
pub struct TriageArgs {
    /// Console logs (any kernel, any machine; syslog, journal, dmesg, CI and z/VM captures).
    #[arg(required = true)]
    pub logs: Vec<PathBuf>,
    /// Directories of known findings (fuzz corpora, `scenarios/findings/`) or write-ups;
    /// default: scenarios/findings and fuzz-corpus, where they exist.
    #[arg(long, num_args = 1..)]
    pub known: Vec<PathBuf>,
}

fn known_dirs(given: &[PathBuf]) -> Vec<PathBuf> {
    if !given.is_empty() {
        return given.to_vec();
    }
    DEFAULT_KNOWN
        .iter()
        .map(PathBuf::from)
        .filter(|p| p.exists())
        .collect()
}

fn describe(line: &TriageLine, dirs: &[PathBuf], err: &mut impl Write) -> std::io::Result<()> {
    writeln!(err, "{}:{}: {}", line.file, line.start_line, line.title)?;
    if line.corrupted {
        return writeln!(
            err,
            "  the report is cut short: its title names the kind only, not matched"
        );
    }
    match line.known.as_deref() {
        Some([]) | None => writeln!(
            err,
            "  not known: no finding in {} has the key `{}`",
            dirs.iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            line.dedup_key
        ),
        Some(found) => {
            for k in found {
                writeln!(err, "  known: {} ({})", k.title, k.finding.display())?;
                match &k.reproducer {
                    Some(r) if k.shrunk => {
                        writeln!(err, "  reproduce: ccwrig run {}", r.display())?
                    }
                    Some(r) => writeln!(
                        err,
                        "  reproduce: ccwrig run {} (the program that first hit it, not shrunk)",
                        r.display()
                    )?,
                    None => writeln!(err, "  no reproducer kept with it")?,
                }
            }
            Ok(())
        }
    }
}

pub fn run(a: TriageArgs) -> anyhow::Result<std::process::ExitCode> {
    let dirs = known_dirs(&a.known);
    let known: Vec<KnownFinding> = load_known(&dirs)?;
    let mut out = std::io::stdout().lock();
    let mut err = std::io::stderr().lock();
    let mut failed = false;
    for log in &a.logs {
        match triage_against(log, Some(&known)) {
            Ok(lines) => {
                if lines.is_empty() {
                    writeln!(err, "{}: no crash report", log.display())?;
                }
                for l in &lines {
                    writeln!(out, "{}", serde_json::to_string(l)?)?;
                    describe(l, &dirs, &mut err)?;
                }
            }
            Err(e) => {
                writeln!(err, "ccwrig: {e}")?;
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
