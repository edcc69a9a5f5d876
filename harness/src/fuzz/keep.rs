//! What a campaign keeps of a finding: the corpus entry, the program's first run files (or,
//! for leaks a later kmemleak reading found, that reading), its VM history, the kernel it ran
//! on, and, within the time box, its triage.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use super::campaign::Shared;
use super::corpus::Recorded;
use super::interest::Hit;
use super::triage;
use super::worker::{Deferred, Worker};
use crate::scenario::Scenario;

/// Records the leaks a batch reading found in earlier programs.
pub(super) async fn record_deferred(
    s: &Arc<Shared>,
    worker: &mut Worker,
    deferred: &[Deferred],
    boots_seen: &mut u64,
) {
    for d in deferred {
        let found = Found {
            program: &d.program,
            pseed: d.pseed,
            console: &d.console,
            run_dir: None,
            history: Some((&d.history, &d.report)),
        };
        record_hits(s, worker, &found, &d.hits, boots_seen).await;
    }
}

/// A program that produced findings, as the corpus records it.
pub(super) struct Found<'a> {
    pub(super) program: &'a Scenario,
    pub(super) pseed: u64,
    pub(super) console: &'a str,
    /// Where its run files still are (the program just ran); `None` for a program whose
    /// leaks a later kmemleak reading found (its files were overwritten since).
    pub(super) run_dir: Option<&'a std::path::Path>,
    /// For such a program: the VM's history up to it, and its part of the reading.
    pub(super) history: Option<(&'a [Scenario], &'a str)>,
}

/// Records each hit in the corpus; a new one is kept with its run files and history and,
/// within the time box, triaged in this worker's VM.
pub(super) async fn record_hits(
    s: &Arc<Shared>,
    worker: &mut Worker,
    found: &Found<'_>,
    hits: &[Hit],
    boots_seen: &mut u64,
) {
    let program = found.program;
    let history: Vec<Scenario> = match found.history {
        Some((h, _)) => h.to_vec(),
        None => worker.history().to_vec(),
    };
    for hit in hits {
        s.stats.hits.fetch_add(1, Ordering::Relaxed);
        let rec = match s.corpus.lock() {
            Ok(mut c) => c.record(
                hit,
                &program.to_toml(),
                found.console,
                found.pseed,
                s.cfg.seed,
            ),
            Err(_) => continue,
        };
        let fdir = match rec {
            Ok(Recorded::New(d)) => d,
            Ok(Recorded::Again { .. }) => {
                // A later hit after a shorter history is the cheaper one to replay.
                if let Ok(c) = s.corpus.lock() {
                    keep_shorter_history(&history, hit, &c.dir_of(&hit.key));
                }
                continue;
            }
            Err(e) => {
                s.error(&e);
                continue;
            }
        };
        s.stats.distinct.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut f) = s.found.lock() {
            f.push((hit.key.clone(), s.t0.elapsed()));
        }
        if let Some(t) = &s.cfg.until_found {
            if hit.title.contains(t.as_str()) {
                s.end();
            }
        }
        match found.run_dir {
            Some(dir) => keep_first_run(dir, &fdir),
            None => keep_kmemleak(found, &fdir),
        }
        keep_history(&history, hit, &fdir);
        // Which kernel (source, patches, config profile, vmlinux for decoding) it was.
        if let Err(e) =
            crate::kernel::KernelRecord::of_bzimage(&s.cfg.run.kernel.bzimage).write(&fdir)
        {
            tracing::warn!("{}: kernel.json: {e}", fdir.display());
        }
        let Some(tc) = s.cfg.triage else { continue };
        let Some((tc, claim)) = s.triage_in_time_box(tc) else {
            tracing::info!(
                "{}: not triaged: the time box has ended, triage has had its share of it, or every other VM is triaging",
                hit.title
            );
            continue;
        };
        let started = Instant::now();
        let t = triage::triage(worker, program, &history, &hit.key, &hit.title, tc).await;
        s.triage_done(claim, started.elapsed());
        s.stats
            .boots
            .fetch_add(worker.boots - *boots_seen, Ordering::Relaxed);
        *boots_seen = worker.boots;
        match t {
            Ok((t, repro)) => {
                let stored = s
                    .corpus
                    .lock()
                    .map(|mut c| c.set_triage(&hit.key, t, repro.map(|r| r.to_toml()).as_deref()));
                if let Ok(Err(e)) = stored {
                    s.error(&e);
                }
            }
            Err(e) => {
                s.error(&e);
                worker.retire().await;
            }
        }
    }
}

/// A program whose leaks a later reading found keeps that reading (its run files are gone).
fn keep_kmemleak(found: &Found<'_>, finding: &std::path::Path) {
    let Some((_, report)) = found.history else {
        return;
    };
    write_or_say(
        &finding.join(crate::rundir::Artifact::Kmemleak.file_name()),
        report,
    );
}

/// Writes a finding's file; a write that fails is said with its path (the finding itself is
/// already stored).
fn write_or_say(path: &std::path::Path, text: &str) {
    if let Err(e) = std::fs::write(path, text) {
        eprintln!(
            "ccwrig: evidence lost: writing {} failed: {e}",
            path.display()
        );
    }
}

/// Writes the VM's history up to the hit as `history.toml`, a phased scenario `ccwrig run`
/// and `ccwrig replay` accept. A write that fails is said with its path.
fn keep_history(
    history: &[crate::scenario::Scenario],
    hit: &super::interest::Hit,
    finding: &std::path::Path,
) {
    let Some(h) = super::replay::history_scenario(history, &hit.title) else {
        return;
    };
    write_or_say(
        &finding.join(crate::rundir::finding_dir::HISTORY),
        &h.to_toml(),
    );
}

/// Replaces the finding's `history.toml` when `history` is shorter (in programs) than the
/// one it holds, or when it holds none. Its last program is then this hit's, which may not be
/// `program.toml` (the first hit's).
fn keep_shorter_history(
    history: &[crate::scenario::Scenario],
    hit: &super::interest::Hit,
    finding: &std::path::Path,
) {
    let path = finding.join(crate::rundir::finding_dir::HISTORY);
    let kept = crate::scenario::parse_file(&path).map(|h| h.history.len() + 1);
    if kept.is_ok_and(|n| n <= history.len()) {
        return;
    }
    keep_history(history, hit, finding);
}

/// Copies the first hit's run files next to the finding (the program dir is reused). A copy
/// that fails is said with its path (the finding itself is already stored).
fn keep_first_run(from: &std::path::Path, finding: &std::path::Path) {
    use crate::rundir::{finding_dir, Artifact, RunDir};
    let (from, to) = (RunDir::at(from), finding.join(finding_dir::FIRST_RUN));
    let to = match RunDir::create(&to) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("ccwrig: evidence lost: {e}");
            return;
        }
    };
    for a in [
        Artifact::Steps,
        Artifact::Dmesg,
        Artifact::Trace,
        Artifact::Fsm,
        Artifact::Scenario,
    ] {
        if let Err(e) = std::fs::copy(from.path(a), to.path(a)) {
            eprintln!(
                "ccwrig: evidence lost: copying {} to {} failed: {e}",
                from.path(a).display(),
                to.path(a).display()
            );
        }
    }
}
