//! `ccwrig report --bundle DIR RUN`: what a maintainer needs to act on a finding, and nothing
//! of the machine that found it. `report.txt` is the text report with every local path
//! replaced by a name inside the bundle; beside it the kernel's `config`, the scenario as
//! `repro.toml` (its seed fixed), the standalone `repro.c` when the scenario can be expressed
//! in C, and `console.log`. Tags such as Reported-by are left to the person who sends it.

use std::path::{Path, PathBuf};

use crate::kernel::KernelRecord;
use crate::repro_c::{self, ExportOptions};
use crate::scenario;
use crate::symbolize::DecodedTrace;

use super::text::{self, Extra, LoadedRun};

pub const REPORT: &str = "report.txt";
pub const CONFIG: &str = "config";
pub const REPRO_TOML: &str = "repro.toml";
pub const REPRO_C: &str = "repro.c";
pub const CONSOLE: &str = "console.log";

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("{path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{file} would carry the local path {path:?}; refusing to write a bundle that does")]
    LocalPath { file: &'static str, path: String },
}

/// What went into the bundle, and what could not (with why), for the caller to print.
#[derive(Debug, Default)]
pub struct Written {
    pub files: Vec<&'static str>,
    pub left_out: Vec<(&'static str, String)>,
}

/// Writes the bundle of `run` into `out` (created if missing).
pub fn write(
    run: &LoadedRun,
    decoded: &Result<Vec<DecodedTrace>, String>,
    out: &Path,
) -> Result<Written, BundleError> {
    std::fs::create_dir_all(out).map_err(|e| BundleError::Write {
        path: out.to_path_buf(),
        source: e,
    })?;
    let mut w = Written::default();
    let mut files: Vec<(&'static str, String)> = Vec::new();

    let config = match &run.kernel {
        Some(k) => config_text(k)?,
        None => Err("the run directory has no kernel.json".into()),
    };
    match &config {
        Ok(c) => files.push((CONFIG, c.clone())),
        Err(why) => w.left_out.push((CONFIG, why.clone())),
    }

    let seed = run.result.as_ref().map(|r| r.seed);
    let scenario = run.scenario_toml.as_deref().map(|t| {
        let name = run
            .result
            .as_ref()
            .map(|r| r.scenario.clone())
            .unwrap_or_else(|| "repro".into());
        scenario::parse_str(t, &name, None).map(|mut sc| {
            if seed.is_some() {
                sc.race.seed = seed;
            }
            sc
        })
    });
    match &scenario {
        Some(Ok(sc)) => {
            files.push((REPRO_TOML, sc.to_toml()));
            match repro_c::export(sc, &ExportOptions::default()) {
                Ok(c) => files.push((REPRO_C, c)),
                Err(e) => w.left_out.push((REPRO_C, e.to_string())),
            }
        }
        Some(Err(e)) => {
            // Not this version's scenario format: ship it as it was run.
            w.left_out
                .push((REPRO_C, format!("the scenario does not parse: {e}")));
            if let Some(t) = &run.scenario_toml {
                files.push((REPRO_TOML, t.clone()));
            }
        }
        None => w
            .left_out
            .push((REPRO_TOML, "the run directory has no scenario".into())),
    }
    if let Some(c) = &run.console {
        files.push((CONSOLE, c.clone()));
    }

    let public = publishable(run);
    // Which vmlinux decoded the traces is a path here; in the bundle it is the build's.
    let decoded = decoded.clone().map(|ts| {
        ts.into_iter()
            .map(|mut t| {
                t.vmlinux = "the vmlinux of this build".into();
                t
            })
            .collect::<Vec<_>>()
    });
    let mut report = text::render(
        &public,
        &decoded,
        &Extra {
            rerun: Some(rerun_line(run)),
        },
    );
    report.push_str(&contents_section(
        &files,
        &w.left_out,
        config.as_deref().ok().and_then(compiler),
    ));
    files.insert(0, (REPORT, report));

    let local = local_prefixes(run);
    for (name, body) in &mut files {
        *body = scrub(body, &local);
        if let Some(p) = local.iter().find(|p| body.contains(p.as_str())) {
            return Err(BundleError::LocalPath {
                file: name,
                path: p.clone(),
            });
        }
    }
    for (name, body) in &files {
        let path = out.join(name);
        std::fs::write(&path, body).map_err(|e| BundleError::Write { path, source: e })?;
        w.files.push(name);
    }
    Ok(w)
}

/// The kernel's .config: the one kernel.json names, or the one beside its bzImage; `Err`
/// says why there is none (a run copied from another machine, a cache entry since removed).
fn config_text(k: &KernelRecord) -> Result<Result<String, String>, BundleError> {
    let Some(p) = k
        .config
        .clone()
        .or_else(|| Some(k.bzimage.parent()?.join(".config")))
    else {
        return Ok(Err("the run's kernel.json names no .config".into()));
    };
    if !p.is_file() {
        return Ok(Err(
            "the kernel's .config is not on this machine (any more)".into(),
        ));
    }
    std::fs::read_to_string(&p)
        .map(Ok)
        .map_err(|e| BundleError::Read { path: p, source: e })
}

/// `CONFIG_CC_VERSION_TEXT`: the compiler the kernel was built with, as Kconfig saw it.
fn compiler(config: &str) -> Option<&str> {
    config
        .lines()
        .find_map(|l| l.strip_prefix("CONFIG_CC_VERSION_TEXT="))
        .map(|v| v.trim_matches('"'))
}

/// The run as the report shows it from inside the bundle: the kernel's files by their bundle
/// names or not at all, the tree and the patch series by their own names.
fn publishable(run: &LoadedRun) -> LoadedRun {
    let kernel = run.kernel.as_ref().map(|k| KernelRecord {
        bzimage: PathBuf::from("(not included: build it from the source below with ./config)"),
        vmlinux: None,
        config: Some(PathBuf::from(format!("./{CONFIG}"))),
        tree: k.tree.as_ref().map(|t| PathBuf::from(base(t))),
        patches_from: k.patches_from.as_ref().map(|p| PathBuf::from(base(p))),
        src: None,
        ..k.clone()
    });
    LoadedRun {
        dir: PathBuf::from("."),
        result: run.result.clone(),
        result_error: run.result_error.clone(),
        kernel,
        scenario_toml: run.scenario_toml.clone(),
        steps: run.steps.clone(),
        fsm: run.fsm.clone(),
        console: run.console.clone(),
    }
}

fn base(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| p.display().to_string())
}

/// How to rerun from inside the bundle: the pinned kernel line or the tree by name, the
/// patch series by name, the profile, and repro.toml (which carries the seed).
fn rerun_line(run: &LoadedRun) -> String {
    let mut args = vec!["ccwrig run".to_string()];
    if let Some(k) = &run.kernel {
        if let Some(t) = &k.tree {
            args.push(format!("--tree <your checkout of {}>", base(t)));
        } else if let Some(v) = &k.version {
            args.push(format!("--kernel-version {v}"));
        }
        if let Some(p) = &k.patches_from {
            args.push(format!("--patches {}", base(p)));
        }
        if let Some(p) = k.profile.filter(|p| p.name() != "fast") {
            args.push(format!("--profile {}", p.name()));
        }
    }
    args.push(REPRO_TOML.into());
    args.join(" ")
}

fn contents_section(
    files: &[(&'static str, String)],
    left_out: &[(&'static str, String)],
    compiler: Option<&str>,
) -> String {
    let mut o = String::from("\n== Files in this bundle ==\n\n");
    let what = |n: &str| match n {
        CONFIG => "the kernel's .config",
        REPRO_TOML => "the ccwrig scenario, seed included",
        REPRO_C => {
            "the same program as standalone C: s390x-linux-gnu-gcc -static -pthread -o repro \
             repro.c; run it as root in an s390x Linux with the subchannels the scenario names; \
             ./repro --help"
        }
        CONSOLE => "the guest's whole console",
        _ => "",
    };
    for (n, _) in files {
        o.push_str(&format!("  {n}: {}\n", what(n)));
    }
    for (n, why) in left_out {
        o.push_str(&format!("  ({n} not included: {why})\n"));
    }
    if let Some(c) = compiler {
        o.push_str(&format!("\nThe kernel was built with {c}.\n"));
    }
    o
}

/// The prefixes of this machine that must not leave it: the run directory, the kernel's
/// cache entry and sources, the home, working and temporary directories.
fn local_prefixes(run: &LoadedRun) -> Vec<String> {
    let mut v: Vec<PathBuf> = vec![run.dir.clone()];
    if let Ok(d) = std::fs::canonicalize(&run.dir) {
        v.push(d);
    }
    if let Some(k) = &run.kernel {
        v.extend(k.bzimage.parent().map(Path::to_path_buf));
        v.extend(k.src.clone());
        v.extend(k.tree.clone());
        v.extend(k.patches_from.clone());
        v.extend(k.vmlinux.clone());
    }
    v.extend(std::env::var_os("HOME").map(PathBuf::from));
    v.extend(std::env::current_dir().ok());
    v.push(std::env::temp_dir());
    let mut s: Vec<String> = v
        .into_iter()
        .map(|p| p.display().to_string())
        .filter(|p| p.len() > 1 && p.starts_with('/'))
        .collect();
    // Longest first: a run directory inside the home directory is named as the run.
    s.sort_by_key(|p| std::cmp::Reverse(p.len()));
    s.dedup();
    s
}

/// Replaces each local prefix by what it stands for in the bundle.
fn scrub(text: &str, local: &[String]) -> String {
    let mut t = text.to_string();
    for p in local {
        t = t.replace(p.as_str(), "<local>");
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrub_replaces_the_longest_prefix_first() {
        let local = vec!["/home/u/runs/r1".to_string(), "/home/u".to_string()];
        assert_eq!(
            scrub("see /home/u/runs/r1/console.log and /home/u/x", &local),
            "see <local>/console.log and <local>/x"
        );
    }

    #[test]
    fn compiler_comes_from_the_config() {
        let c = "CONFIG_FOO=y\nCONFIG_CC_VERSION_TEXT=\"s390x-linux-gnu-gcc (Debian 12.2.0-14) 12.2.0\"\n";
        assert_eq!(
            compiler(c),
            Some("s390x-linux-gnu-gcc (Debian 12.2.0-14) 12.2.0")
        );
        assert_eq!(compiler("CONFIG_FOO=y\n"), None);
    }

    #[test]
    fn rerun_names_the_series_and_the_bundled_scenario_only() {
        let run = LoadedRun {
            dir: PathBuf::from("/somewhere/run"),
            kernel: Some(KernelRecord {
                bzimage: PathBuf::from("/cache/k/bzImage"),
                version: Some("6.12".into()),
                patches_from: Some(PathBuf::from("/work/x/kernel/patches/fix-a")),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            rerun_line(&run),
            "ccwrig run --kernel-version 6.12 --patches fix-a repro.toml"
        );
    }
}
