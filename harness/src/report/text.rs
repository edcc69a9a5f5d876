//! A run written up the way kernel developers post a bug on the list: summary, kernel and
//! tree, patches, reproducer, decoded call trace, FSM timeline and console excerpt, rerun.
//!
//! Everything comes from the run directory (result.json, kernel.json, scenario.toml,
//! steps.jsonl, fsm.txt, console.log), so a report can be written long after the run.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::kernel::KernelRecord;
use crate::oracle::crash::{self, CrashReport};
use crate::run::RunResult;
use crate::rundir::{finding_dir, Artifact, RunDir, RunDirError};
use crate::symbolize::{self, DecodedTrace, Symbolizer};

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{path}: not a run directory (no result.json, console.log or scenario.toml)")]
    NotARun { path: PathBuf },
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What a run directory holds, read once.
#[derive(Debug, Default)]
pub struct LoadedRun {
    pub dir: PathBuf,
    pub result: Option<RunResult>,
    /// Why `result.json` could not be read as this version's result (an older ccwrig's run).
    pub result_error: Option<String>,
    pub kernel: Option<KernelRecord>,
    pub scenario_toml: Option<String>,
    pub steps: Vec<Value>,
    pub fsm: Option<String>,
    pub console: Option<String>,
}

impl LoadedRun {
    /// Also reads a fuzzer's crash directory: `program.toml` is its scenario and
    /// `first-run/` holds the steps and FSM timeline of the run that found it.
    pub fn load(dir: &Path) -> Result<LoadedRun, ReportError> {
        let here = RunDir::at(dir);
        let first = RunDir::at(dir.join(finding_dir::FIRST_RUN));
        let read = |a: Artifact| here.read(a).or_else(|| first.read(a));
        let (result, result_error) = match here.read_json::<RunResult>(Artifact::Result) {
            Ok(r) => (Some(r), None),
            Err(RunDirError::Io { .. }) => (None, None),
            Err(e) => (None, Some(e.to_string())),
        };
        let r = LoadedRun {
            dir: dir.to_path_buf(),
            result,
            result_error,
            kernel: KernelRecord::read(dir),
            scenario_toml: read(Artifact::Scenario)
                .or_else(|| std::fs::read_to_string(dir.join(finding_dir::PROGRAM)).ok()),
            steps: read(Artifact::Steps)
                .map(|t| {
                    t.lines()
                        .filter_map(|l| serde_json::from_str(l).ok())
                        .collect()
                })
                .unwrap_or_default(),
            fsm: read(Artifact::Fsm),
            console: read(Artifact::Console),
        };
        if r.result.is_none() && r.console.is_none() && r.scenario_toml.is_none() {
            return Err(ReportError::NotARun {
                path: dir.to_path_buf(),
            });
        }
        Ok(r)
    }

    /// Crash reports in the console (one per distinct title, in order).
    pub fn crashes(&self) -> Vec<CrashReport> {
        let mut out: Vec<CrashReport> = Vec::new();
        for c in crash::detect(self.console.as_deref().unwrap_or("")) {
            if !out.iter().any(|o| o.title == c.title) {
                out.push(c);
            }
        }
        out
    }
}

/// The decoded traces of `crashes`, or why there are none.
pub fn decode_all(
    crashes: &[CrashReport],
    vmlinux: Option<&Path>,
    src: Option<&Path>,
) -> Result<Vec<DecodedTrace>, String> {
    if crashes.is_empty() {
        return Ok(Vec::new());
    }
    let Some(v) = vmlinux else {
        return Err("no vmlinux recorded for this run (kernel.json); pass --vmlinux".into());
    };
    let s = Symbolizer::open(v, src).map_err(|e| e.to_string())?;
    Ok(crashes.iter().map(|c| symbolize::decode(c, &s)).collect())
}

/// Options that are not in the run directory.
#[derive(Debug, Default)]
pub struct Extra {
    /// How to rerun, as the caller knows it (`ccwrig run --seed … …`).
    pub rerun: Option<String>,
}

pub fn render(
    run: &LoadedRun,
    decoded: &Result<Vec<DecodedTrace>, String>,
    extra: &Extra,
) -> String {
    let mut o = String::new();
    let crashes = run.crashes();
    let scenario = run
        .result
        .as_ref()
        .map(|r| r.scenario.clone())
        .unwrap_or_else(|| dir_name(&run.dir));
    let release = run
        .result
        .as_ref()
        .map(|r| r.kernel_release.clone())
        .or_else(|| run.kernel.as_ref().and_then(|k| k.release.clone()))
        .or_else(|| release_from_console(run.console.as_deref().unwrap_or("")))
        .unwrap_or_else(|| "unknown kernel".into());
    let findings: Vec<(String, String)> = run
        .result
        .iter()
        .flat_map(|r| r.verdict.findings.iter())
        .map(|f| {
            let kind = serde_json::to_value(f.kind)
                .ok()
                .and_then(|k| k.as_str().map(str::to_owned))
                .unwrap_or_default();
            let title = match &f.fallout_of {
                Some(cause) => format!("{} (consequence of {cause})", f.title),
                None => f.title.clone(),
            };
            (kind, title)
        })
        .collect();
    let headline = crashes
        .first()
        .map(|c| c.title.clone())
        .or_else(|| findings.first().map(|f| f.1.clone()))
        .unwrap_or_else(|| "no finding".into());

    o.push_str(&format!("Subject: [BUG] {headline} ({release})\n\n"));
    o.push_str(&wrap(
        &summary(run, &scenario, &release, &headline, &findings, &crashes),
        78,
    ));
    o.push_str("\n\n");

    section(&mut o, "Kernel");
    o.push_str(&kernel_block(run, &release));

    if !findings.is_empty() {
        section(&mut o, "Findings");
        for (kind, title) in &findings {
            o.push_str(&format!("  - [{kind}] {title}\n"));
        }
    } else if let Some(e) = &run.result_error {
        section(&mut o, "Findings");
        o.push_str(&format!(
            "  result.json could not be read (written by another ccwrig version?): {e}\n"
        ));
    }

    section(&mut o, "Reproducer");
    o.push_str(&format!(
        "Scenario {scenario} (ccwrig scenario file as run, seed included):\n\n"
    ));
    for l in run
        .scenario_toml
        .as_deref()
        .unwrap_or("(scenario.toml missing)\n")
        .lines()
    {
        o.push_str(&format!("    {l}\n"));
    }
    if !run.steps.is_empty() {
        o.push_str("\nWhat happened, step by step (guest microseconds since boot):\n\n");
        for s in &run.steps {
            o.push_str(&format!("  {}\n", describe_step(s)));
        }
    }

    for (i, c) in crashes.iter().enumerate() {
        section(
            &mut o,
            &format!("Call trace {} of {}: {}", i + 1, crashes.len(), c.title),
        );
        match decoded {
            Ok(traces) => match traces.get(i) {
                Some(t) => {
                    o.push_str(&format!(
                        "decoded with {}{}:\n\n",
                        t.vmlinux,
                        if t.has_lines {
                            ""
                        } else {
                            " (no DWARF: function names only)"
                        }
                    ));
                    o.push_str(&symbolize::render(t));
                }
                None => o.push_str(&indent(&c.text)),
            },
            Err(why) => {
                o.push_str(&format!("(not decoded: {why})\n\n"));
                o.push_str(&indent(&c.text));
            }
        }
    }

    if let Some(fsm) = &run.fsm {
        section(
            &mut o,
            "vfio_ccw FSM timeline (from the vfio_ccw_fsm_event trace)",
        );
        o.push_str(&fsm_excerpt(fsm, crash_time(run, &crashes)));
    }

    if let (Some(console), Some(c)) = (&run.console, crashes.first()) {
        section(&mut o, "Console around the first crash");
        o.push_str(&console_excerpt(console, c.start_line, 12, 40));
    }

    section(&mut o, "How to rerun");
    let rerun = extra.rerun.clone().unwrap_or_else(|| rerun_line(run));
    o.push_str(&format!("  {rerun}\n"));
    o.push_str(&format!(
        "  (artifacts of this run: {})\n",
        run.dir.display()
    ));
    o
}

fn section(o: &mut String, title: &str) {
    o.push_str(&format!("\n== {title} ==\n\n"));
}

fn dir_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn indent(t: &str) -> String {
    t.lines().map(|l| format!("  {l}\n")).collect()
}

fn summary(
    run: &LoadedRun,
    scenario: &str,
    release: &str,
    headline: &str,
    findings: &[(String, String)],
    crashes: &[CrashReport],
) -> String {
    let k = run.kernel.as_ref();
    let on = match k.and_then(|k| k.tree.as_ref()) {
        Some(t) => format!(
            "a kernel built from the tree {}{}",
            t.display(),
            k.and_then(|k| k.tree_head.as_ref())
                .map(|h| format!(" at {}", short(h)))
                .unwrap_or_default()
        ),
        None => format!("Linux {release}"),
    };
    let patches = match k.map(|k| k.patches.len()).unwrap_or(0) {
        0 => String::new(),
        1 => " with one patch applied".into(),
        n => format!(" with {n} patches applied"),
    };
    let what = match crashes.first() {
        Some(c) => format!(
            "the kernel reported \"{}\"{}",
            c.title,
            if c.alive {
                " and kept running"
            } else {
                " and did not survive it"
            }
        ),
        None if findings.is_empty() => "no finding was reported".into(),
        None => format!("the run failed: {headline}"),
    };
    let more = findings.len().saturating_sub(crashes.len().max(1));
    let more = if more > 0 && !crashes.is_empty() {
        format!(" The run also recorded {more} consequence(s) listed below (hangs, leaks, step results).")
    } else {
        String::new()
    };
    let desc = run
        .scenario_toml
        .as_deref()
        .and_then(first_description_sentence)
        .map(|d| format!(" The scenario: {d}"))
        .unwrap_or_default();
    format!(
        "Running the vfio-ccw scenario {scenario} under QEMU (s390x TCG) on {on}{patches}, {what}.{more}{desc}"
    )
}

fn first_description_sentence(toml_text: &str) -> Option<String> {
    let v: toml::Value = toml::from_str(toml_text).ok()?;
    let d = v.get("description")?.as_str()?;
    let flat = d.split_whitespace().collect::<Vec<_>>().join(" ");
    let end = flat.find(". ").map(|i| i + 1).unwrap_or(flat.len());
    Some(flat[..end].to_string())
}

fn short(h: &str) -> String {
    match h.strip_suffix("-dirty") {
        Some(b) => format!("{}-dirty", &b[..b.len().min(12)]),
        None => h[..h.len().min(12)].to_string(),
    }
}

fn kernel_block(run: &LoadedRun, release: &str) -> String {
    let mut o = format!("  release:  {release}\n");
    let Some(k) = &run.kernel else {
        o.push_str(
            "  (no kernel.json in the run directory: built before ccwrig recorded kernels)\n",
        );
        return o;
    };
    if let Some(s) = &k.source {
        o.push_str(&format!("  source:   {s}\n"));
    }
    if let Some(t) = &k.tree {
        o.push_str(&format!("  tree:     {}\n", t.display()));
        o.push_str(&format!(
            "  HEAD:     {}{}\n",
            k.tree_head.as_deref().unwrap_or("(not a git tree)"),
            k.tree_subject
                .as_deref()
                .map(|s| format!(" (\"{s}\")"))
                .unwrap_or_default()
        ));
    }
    if k.patches.is_empty() {
        o.push_str("  patches:  none\n");
    } else {
        o.push_str(&format!(
            "  patches:  {} from {}\n",
            k.patches.len(),
            k.patches_from
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        ));
        for p in &k.patches {
            o.push_str(&format!("            {p}\n"));
        }
    }
    if let Some(p) = k.profile {
        o.push_str(&format!("  profile:  {} (kernel/configs/)\n", p.name()));
    }
    if let Some(c) = &k.config {
        o.push_str(&format!("  .config:  {}\n", c.display()));
    }
    o.push_str(&format!("  bzImage:  {}\n", k.bzimage.display()));
    if let Some(v) = &k.vmlinux {
        o.push_str(&format!("  vmlinux:  {}\n", v.display()));
    }
    if let Some(key) = &k.key {
        o.push_str(&format!("  build key: {}\n", &key[..key.len().min(16)]));
    }
    o
}

/// `[race] user #4 (line 33) reset handle=d -> blocked (expected EINVAL|ENODEV|ok)`.
pub fn describe_step(s: &Value) -> String {
    let get = |k: &str| s.get(k).cloned().unwrap_or(Value::Null);
    let op = get("op");
    let name = op.get("op").and_then(|v| v.as_str()).unwrap_or("?");
    let args: Vec<String> = op
        .as_object()
        .map(|m| {
            m.iter()
                .filter(|(k, _)| k.as_str() != "op")
                .map(|(k, v)| match v {
                    Value::String(s) => format!("{k}={s}"),
                    other => format!("{k}={other}"),
                })
                .collect()
        })
        .unwrap_or_default();
    let outcome = |o: &Value| -> String {
        let kind = o.get("kind").and_then(|v| v.as_str()).unwrap_or("?");
        let extra = o
            .as_object()
            .map(|m| {
                m.iter()
                    .filter(|(k, _)| k.as_str() != "kind")
                    .map(|(_, v)| {
                        v.as_str()
                            .map(str::to_string)
                            .unwrap_or_else(|| v.to_string())
                    })
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default();
        if extra.is_empty() {
            kind.to_string()
        } else {
            format!("{kind} {extra}")
        }
    };
    let mut res = outcome(&get("outcome"));
    if let Some(l) = s.get("late").filter(|v| !v.is_null()) {
        res = format!("{res}, then {}", outcome(l));
    }
    let expected: Vec<String> = get("expected")
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let matched = get("matched").as_bool().unwrap_or(true);
    let mark = if matched { "" } else { "  <-- unexpected" };
    format!(
        "{:>9} us  [{}] {} (line {}) {}{}{} -> {res} (expected {}){mark}",
        get("guest_start_us").as_u64().unwrap_or(0),
        get("phase").as_str().unwrap_or("?"),
        get("actor").as_str().unwrap_or("?"),
        get("line").as_u64().unwrap_or(0),
        name,
        if args.is_empty() { "" } else { " " },
        args.join(" "),
        expected.join("|"),
    )
}

/// Seconds since boot of the first crash (its first `[    2.530366]` prefix).
fn crash_time(run: &LoadedRun, crashes: &[CrashReport]) -> Option<f64> {
    let c = crashes.first()?;
    let line = run
        .console
        .as_deref()?
        .lines()
        .nth(c.start_line.checked_sub(1)?)?;
    let open = line.find('[')?;
    let close = line[open..].find(']')? + open;
    line[open + 1..close].trim().parse().ok()
}

/// fsm.txt is short for a scenario; a fuzzing run's can be long, so keep the lines near the
/// crash and the violations, plus every header and summary line.
fn fsm_excerpt(fsm: &str, crash_at: Option<f64>) -> String {
    let lines: Vec<&str> = fsm.lines().collect();
    if lines.len() <= 60 {
        return indent(fsm);
    }
    let ts = |l: &str| {
        l.split_whitespace()
            .next()
            .and_then(|t| t.parse::<f64>().ok())
    };
    let keep: Vec<bool> = lines
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let near_crash = match (crash_at, ts(l)) {
                (Some(c), Some(t)) => t >= c - 1.0 && t <= c + 0.5,
                _ => false,
            };
            let near_violation = lines[i.saturating_sub(3)..(i + 4).min(lines.len())]
                .iter()
                .any(|n| n.to_lowercase().contains("violation") && !n.starts_with("violations:"));
            ts(l).is_none() || near_crash || near_violation
        })
        .collect();
    let mut o = String::new();
    let mut skipped = false;
    for (l, k) in lines.iter().zip(keep) {
        if k {
            o.push_str(&format!("  {l}\n"));
            skipped = false;
        } else if !skipped {
            o.push_str("  ...\n");
            skipped = true;
        }
    }
    o
}

/// `before` lines of context, then the report itself up to `max` lines.
fn console_excerpt(console: &str, start_line: usize, before: usize, max: usize) -> String {
    let lines: Vec<&str> = console.lines().collect();
    let start = start_line.saturating_sub(1);
    let from = start.saturating_sub(before);
    let to = (start + max).min(lines.len());
    lines[from..to].iter().map(|l| format!("  {l}\n")).collect()
}

/// The command that reruns this run: same seed, same kernel inputs, the recorded scenario.
pub fn rerun_line(run: &LoadedRun) -> String {
    let mut args = vec!["ccwrig run".to_string()];
    if let Some(seed) = run.result.as_ref().map(|r| r.seed) {
        args.push(format!("--seed {seed}"));
    }
    if let Some(k) = &run.kernel {
        if let Some(t) = &k.tree {
            args.push(format!("--tree {}", t.display()));
        } else if let Some(v) = &k.version {
            args.push(format!("--kernel-version {v}"));
        } else if k.key.is_none() {
            args.push(format!("--kernel {}", k.bzimage.display()));
        }
        if let Some(p) = &k.patches_from {
            args.push(format!("--patches {}", p.display()));
        }
        if let Some(p) = k.profile.filter(|p| p.name() != "fast") {
            args.push(format!("--profile {}", p.name()));
        }
    }
    args.push(run.dir.join("scenario.toml").display().to_string());
    args.join(" ")
}

/// The release an oops header names (`CPU: 0 UID: 0 PID: 61 Comm: x Not tainted 6.12.117 #1`).
fn release_from_console(console: &str) -> Option<String> {
    console.lines().find_map(|l| {
        let rest = l.split_once(" Comm: ")?.1;
        let words: Vec<&str> = rest.split_whitespace().collect();
        let hash = words.iter().position(|w| w.starts_with('#'))?;
        let r = words.get(hash.checked_sub(1)?)?;
        r.starts_with(|c: char| c.is_ascii_digit())
            .then(|| r.to_string())
    })
}

/// Greedy word wrap of one paragraph.
fn wrap(text: &str, width: usize) -> String {
    let mut out = String::new();
    let mut line = String::new();
    for w in text.split_whitespace() {
        if !line.is_empty() && line.len() + 1 + w.len() > width {
            out.push_str(&line);
            out.push('\n');
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(w);
    }
    out.push_str(&line);
    out
}
