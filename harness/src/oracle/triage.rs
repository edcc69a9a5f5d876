//! `ccwrig triage LOGFILE... [--known DIR...]`: the crash reports of saved console logs, one
//! JSON object each, and which of them ccwrig already knows with a reproducer to run.
//!
//! Known findings come from two places:
//! - fuzz findings: any directory below a `--known` directory that holds a `meta.json`
//!   (`ccwrig fuzz --corpus DIR` writes `DIR/crashes/<slug>/meta.json`; the findings kept in
//!   `scenarios/findings/fuzz-*/` hold them one level down). The finding's key is the one its
//!   `meta.json` records, plus the keys of the reports in its `console.log` (so a finding
//!   recorded before a title format changed is still found). Its reproducer is `repro.toml`
//!   (shrunk) or else `program.toml` (the program that first hit it);
//! - write-ups: `*.md` files whose fenced code blocks quote a console; the reproducer is the
//!   scenario file the write-up names on a "Reproduce" line, else the first it names.

use super::crash::{self, CrashKind, CrashReport};
use super::OracleError;
use regex::Regex;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TriageLine {
    pub file: String,
    pub title: String,
    pub kind: CrashKind,
    pub guilty: Option<String>,
    pub alive: bool,
    /// The report was cut short: its title names the kind only.
    pub corrupted: bool,
    /// Equal for reports of the same bug (see [`crash::dedup_key`]).
    pub dedup_key: String,
    pub start_line: usize,
    /// The known findings with this report's key (only when known findings were given).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub known: Option<Vec<KnownMatch>>,
}

/// A known finding that has the same key as a report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KnownMatch {
    pub title: String,
    /// The finding's directory (fuzz) or write-up file.
    pub finding: PathBuf,
    /// The scenario that reproduces it, when one is kept.
    pub reproducer: Option<PathBuf>,
    /// Whether `reproducer` is a shrunk `repro.toml` or a write-up's scenario rather than the
    /// unshrunk program that first hit the bug.
    pub shrunk: bool,
}

/// One known finding and the keys it answers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownFinding {
    pub title: String,
    pub path: PathBuf,
    pub keys: BTreeSet<String>,
    pub reproducer: Option<PathBuf>,
    pub shrunk: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum KnownError {
    #[error("known findings: {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("known findings: {path}: not a finding's meta.json: {message}")]
    Meta { path: PathBuf, message: String },
}

/// The key a fuzz finding of this report carries (`crash: ` and the crash oracle's key).
pub fn finding_key(r: &CrashReport) -> String {
    format!("crash: {}", crash::dedup_key(r))
}

/// Reports of one log file; empty for a clean log. Invalid UTF-8 is replaced, not fatal:
/// console captures can hold binary noise.
pub fn triage(path: &Path) -> Result<Vec<TriageLine>, OracleError> {
    triage_against(path, None)
}

/// As [`triage`], each report matched against `known` when given.
pub fn triage_against(
    path: &Path,
    known: Option<&[KnownFinding]>,
) -> Result<Vec<TriageLine>, OracleError> {
    let bytes = std::fs::read(path).map_err(|source| OracleError::Read {
        path: path.to_owned(),
        source,
    })?;
    let text = String::from_utf8_lossy(&bytes);
    Ok(crash::detect(&text)
        .iter()
        .map(|r| TriageLine {
            file: path.display().to_string(),
            title: r.title.clone(),
            kind: r.kind,
            guilty: r.guilty.clone(),
            alive: r.alive,
            corrupted: r.corrupted,
            dedup_key: crash::dedup_key(r),
            start_line: r.start_line,
            known: known.map(|k| matches(r, k)),
        })
        .collect())
}

/// The known findings with the key of `r`. A corrupted report's key names its kind only and
/// would match unrelated findings of that kind: it matches nothing.
pub fn matches(r: &CrashReport, known: &[KnownFinding]) -> Vec<KnownMatch> {
    if r.corrupted {
        return Vec::new();
    }
    let key = finding_key(r);
    let mut found: Vec<KnownMatch> = known
        .iter()
        .filter(|k| k.keys.contains(&key))
        .map(|k| KnownMatch {
            title: k.title.clone(),
            finding: k.path.clone(),
            reproducer: k.reproducer.clone(),
            shrunk: k.shrunk,
        })
        .collect();
    // The best reproducer first: a shrunk one or a write-up's scenario.
    found.sort_by_key(|m| (!m.shrunk, m.reproducer.is_none()));
    found
}

#[derive(Deserialize)]
struct MetaKey {
    key: String,
    title: String,
}

/// How deep below a `--known` directory findings are looked for (`DIR/crashes/<slug>/`).
const MAX_DEPTH: usize = 3;

/// Every known finding under `dirs` (directories, or single write-up files).
pub fn load_known(dirs: &[PathBuf]) -> Result<Vec<KnownFinding>, KnownError> {
    let mut out = Vec::new();
    for d in dirs {
        collect(d, 0, &mut out)?;
    }
    Ok(out)
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> KnownError + '_ {
    move |source| KnownError::Read {
        path: path.to_owned(),
        source,
    }
}

fn collect(path: &Path, depth: usize, out: &mut Vec<KnownFinding>) -> Result<(), KnownError> {
    let meta = std::fs::metadata(path).map_err(io(path))?;
    if meta.is_file() {
        if path.extension().is_some_and(|e| e == "md") {
            out.extend(write_up(path)?);
        }
        return Ok(());
    }
    let meta_json = path.join("meta.json");
    if meta_json.is_file() {
        out.extend(fuzz_finding(path, &meta_json)?);
        return Ok(());
    }
    if depth >= MAX_DEPTH {
        return Ok(());
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(io(path))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for e in entries {
        if e.is_dir() || e.extension().is_some_and(|x| x == "md") {
            collect(&e, depth + 1, out)?;
        }
    }
    Ok(())
}

fn fuzz_finding(dir: &Path, meta_json: &Path) -> Result<Option<KnownFinding>, KnownError> {
    let text = std::fs::read_to_string(meta_json).map_err(io(meta_json))?;
    let m: MetaKey = serde_json::from_str(&text).map_err(|e| KnownError::Meta {
        path: meta_json.to_owned(),
        message: e.to_string(),
    })?;
    let mut keys = BTreeSet::new();
    if m.key.starts_with("crash: ") {
        keys.insert(m.key.clone());
    }
    let console = dir.join("console.log");
    if console.is_file() {
        let bytes = std::fs::read(&console).map_err(io(&console))?;
        keys.extend(
            crash::detect(&String::from_utf8_lossy(&bytes))
                .iter()
                .filter(|r| !r.corrupted)
                .map(finding_key),
        );
    }
    if keys.is_empty() {
        // An FSM, hang or leak finding: no console report to match.
        return Ok(None);
    }
    let repro = dir.join("repro.toml");
    let program = dir.join("program.toml");
    let (reproducer, shrunk) = if repro.is_file() {
        (Some(repro), true)
    } else if program.is_file() {
        (Some(program), false)
    } else {
        (None, false)
    };
    Ok(Some(KnownFinding {
        title: m.title,
        path: dir.to_owned(),
        keys,
        reproducer,
        shrunk,
    }))
}

static FENCE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?ms)^```[^\n]*\n(.*?)^```").expect("static regex"));
static SCENARIO: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"scenarios/[\w./-]+\.toml").expect("static regex"));
static HEADING: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?m)^#\s+(.+)$").expect("static regex"));

fn write_up(path: &Path) -> Result<Option<KnownFinding>, KnownError> {
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    let keys: BTreeSet<String> = FENCE
        .captures_iter(&text)
        .flat_map(|c| crash::detect(&c[1]))
        .filter(|r| !r.corrupted)
        .map(|r| finding_key(&r))
        .collect();
    if keys.is_empty() {
        return Ok(None);
    }
    let named = text
        .lines()
        .find(|l| l.contains("Reproduce"))
        .and_then(|l| SCENARIO.find(l))
        .or_else(|| SCENARIO.find(&text))
        .map(|m| m.as_str().to_owned());
    // Write-ups name scenarios from the repository root: `scenarios/findings/x.md` is two
    // levels below it.
    let root = path
        .parent()
        .and_then(Path::parent)
        .and_then(Path::parent)
        .unwrap_or(Path::new("."));
    let reproducer = named.map(|n| {
        let p = root.join(&n);
        if p.is_file() {
            p
        } else {
            PathBuf::from(n)
        }
    });
    let title = HEADING
        .captures(&text)
        .map(|c| c[1].trim().to_owned())
        .unwrap_or_else(|| path.display().to_string());
    Ok(Some(KnownFinding {
        title,
        path: path.to_owned(),
        keys,
        shrunk: reproducer.is_some(),
        reproducer,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("harness sits in the repository")
            .to_owned()
    }

    #[test]
    fn seed_log_triages_to_one_json_line() {
        let seed = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/reports/seed-5.15-rc1-vfio-ccw-teardown-oops.log");
        let lines = triage(&seed).expect("seed log readable");
        assert_eq!(lines.len(), 1);
        let json = serde_json::to_value(&lines[0]).expect("serialises");
        assert_eq!(json["kind"], "program_check");
        assert_eq!(json["title"], "illegal operation in vfio_ccw_mdev_ioctl");
        assert_eq!(json["guilty"], "vfio_ccw_mdev_ioctl");
        assert!(json.get("known").is_none());
        assert!(triage(Path::new("/nonexistent/log")).is_err());
    }

    #[test]
    fn seed_log_matches_the_planted_bug_finding() {
        // A real `ccwrig fuzz` finding of the planted seed bug (kernel/patches/notoper-open-null).
        let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/symbolize");
        let known = load_known(std::slice::from_ref(&fuzz)).expect("findings load");
        let seed = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/reports/seed-5.15-rc1-vfio-ccw-teardown-oops.log");
        let lines = triage_against(&seed, Some(&known)).expect("seed log readable");
        let m = lines[0].known.as_deref().expect("matched against findings");
        assert_eq!(m.len(), 1, "{m:?}");
        assert_eq!(m[0].finding, fuzz.join("fuzz-crash-notoper"));
        assert_eq!(
            m[0].reproducer.as_deref(),
            Some(fuzz.join("fuzz-crash-notoper/program.toml").as_path())
        );
        assert!(!m[0].shrunk);
    }

    #[test]
    fn clean_kernel_finding_is_known_from_fuzz_and_write_up() {
        let known = load_known(&[repo().join("scenarios/findings")]).expect("findings load");
        let log = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/reports/6.12-fuzz-null-deref-cio-start-key.log");
        let lines = triage_against(&log, Some(&known)).expect("log readable");
        let m = lines[0].known.as_deref().expect("matched against findings");
        let write_up = m
            .iter()
            .find(|k| k.finding.ends_with("unbind-vs-ccw-auto-online.md"))
            .expect("the write-up quotes this crash");
        assert_eq!(
            write_up.reproducer.as_deref(),
            Some(
                repo()
                    .join("scenarios/unbind_during_ccw_auto_online.toml")
                    .as_path()
            )
        );
        assert!(m.iter().any(|k| k.finding.ends_with(
            "crash-oops-bug-unable-to-handle-kernel-null-pointer-dereference-in-cio-start-key"
        )));
        // A different crash is not taken for it.
        let other =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/reports/6.12-lkdtm-kasan.log");
        let lines = triage_against(&other, Some(&known)).expect("log readable");
        assert!(lines
            .iter()
            .all(|l| l.known.as_ref().is_some_and(Vec::is_empty)));
    }

    #[test]
    fn unreadable_known_dir_is_an_error_naming_it() {
        let e = load_known(&[PathBuf::from("/nonexistent/findings")]).expect_err("missing dir");
        assert!(e.to_string().contains("/nonexistent/findings"), "{e}");
    }
}
