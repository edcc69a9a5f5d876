//! A patch series: a directory of `*.patch` files applied in sorted order, or one mbox file
//! (as written by `git format-patch --stdout`) split into its messages.

use super::error::{io, KernelError};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Patch {
    /// File name, or `FILE#N (Subject)` for a message of an mbox.
    pub name: String,
    pub text: Vec<u8>,
}

/// Reads the series at `path` in application order.
pub fn series(path: &Path) -> Result<Vec<Patch>, KernelError> {
    let patches = if path.is_dir() {
        let mut files: Vec<_> = std::fs::read_dir(path)
            .map_err(io("listing", path))?
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "patch"))
            .collect();
        files.sort();
        files
            .into_iter()
            .map(|p| {
                let text = std::fs::read(&p).map_err(io("reading", &p))?;
                Ok(Patch {
                    name: p
                        .file_name()
                        .unwrap_or_default()
                        .to_string_lossy()
                        .into_owned(),
                    text,
                })
            })
            .collect::<Result<Vec<_>, KernelError>>()?
    } else if path.is_file() {
        let text = std::fs::read(path).map_err(io("reading", path))?;
        let file = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        split_mbox(&file, &text)
    } else {
        return Err(KernelError::NoPatches(path.to_path_buf()));
    };
    if patches.is_empty() {
        return Err(KernelError::EmptySeries(path.to_path_buf()));
    }
    Ok(patches)
}

/// Splits at mbox `From ` lines; messages without a diff (cover letters) are dropped, since
/// `patch` would reject them as garbage.
fn split_mbox(file: &str, text: &[u8]) -> Vec<Patch> {
    let text = String::from_utf8_lossy(text);
    let mut messages: Vec<String> = Vec::new();
    let mut prev_blank = true;
    for line in text.split_inclusive('\n') {
        if line.starts_with("From ") && prev_blank || messages.is_empty() {
            messages.push(String::new());
        }
        prev_blank = line.trim_end().is_empty();
        if let Some(m) = messages.last_mut() {
            m.push_str(line);
        }
    }
    let has_diff = |m: &str| {
        m.lines()
            .any(|l| l.starts_with("@@ ") || l.starts_with("diff --git "))
    };
    let many = messages.iter().filter(|m| has_diff(m)).count() > 1;
    messages
        .into_iter()
        .filter(|m| has_diff(m))
        .enumerate()
        .map(|(i, m)| {
            let subject = m
                .lines()
                .find_map(|l| l.strip_prefix("Subject: "))
                .map(str::trim);
            let name = match (many, subject) {
                (false, _) => file.to_string(),
                (true, Some(s)) => format!("{file}#{} ({s})", i + 1),
                (true, None) => format!("{file}#{}", i + 1),
            };
            Patch {
                name,
                text: m.into_bytes(),
            }
        })
        .collect()
}

/// Applies the series to `dir` in order. Each patch is dry-run first, so a failing patch
/// leaves no half-applied hunks behind.
pub fn apply(series: &[Patch], dir: &Path) -> Result<(), KernelError> {
    for patch in series {
        let out = run_patch(patch, dir, true)?;
        if let Some(failure) = out {
            return Err(KernelError::PatchFailed {
                patch: patch.name.clone(),
                first_failure: failure,
            });
        }
        if let Some(failure) = run_patch(patch, dir, false)? {
            return Err(KernelError::PatchFailed {
                patch: patch.name.clone(),
                first_failure: failure,
            });
        }
    }
    Ok(())
}

/// Runs GNU patch; `Some(first failure line)` when it did not apply cleanly.
fn run_patch(patch: &Patch, dir: &Path, dry_run: bool) -> Result<Option<String>, KernelError> {
    let mut cmd = Command::new("patch");
    cmd.args([
        "-p1",
        "--batch",
        "--forward",
        "--no-backup-if-mismatch",
        "--reject-file=-",
    ])
    .arg("-d")
    .arg(dir);
    if dry_run {
        cmd.arg("--dry-run");
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| KernelError::Spawn {
            program: "patch".into(),
            source,
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        // patch may exit early on garbage and close its end; its output says why.
        let _ = stdin.write_all(&patch.text);
    }
    let out = child
        .wait_with_output()
        .map_err(|source| KernelError::Spawn {
            program: "patch".into(),
            source,
        })?;
    if out.status.success() {
        return Ok(None);
    }
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(Some(first_failure(&text)))
}

/// The line of patch's output that names the first problem, with the file it concerns.
fn first_failure(output: &str) -> String {
    const MARKERS: [&str; 6] = [
        "FAILED",
        "can't find file",
        "Reversed (or previously applied)",
        "malformed patch",
        "Only garbage",
        "No such file",
    ];
    let mut file: Option<&str> = None;
    for line in output.lines() {
        if let Some(f) = line
            .strip_prefix("checking file ")
            .or_else(|| line.strip_prefix("patching file "))
        {
            file = Some(f.trim());
        } else if MARKERS.iter().any(|m| line.contains(m)) {
            return match file {
                Some(f) if !line.contains("can't find file") => format!("{f}: {}", line.trim()),
                _ => line.trim().to_string(),
            };
        }
    }
    output
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("patch failed without output")
        .trim()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIX: &str =
        "--- a/f.c\n+++ b/f.c\n@@ -1,3 +1,3 @@\n int a;\n-int b;\n+int bb;\n int c;\n";
    const FIX2: &str =
        "--- a/f.c\n+++ b/f.c\n@@ -1,3 +1,3 @@\n int a;\n-int bb;\n+int bbb;\n int c;\n";

    fn tree() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("f.c"), "int a;\nint b;\nint c;\n").unwrap();
        d
    }

    #[test]
    fn directory_series_is_applied_in_sorted_order() {
        let p = tempfile::tempdir().unwrap();
        // Written in reverse so directory order cannot accidentally match sorted order.
        std::fs::write(p.path().join("0002-second.patch"), FIX2).unwrap();
        std::fs::write(p.path().join("0001-first.patch"), FIX).unwrap();
        std::fs::write(p.path().join("README"), "not a patch").unwrap();
        let s = series(p.path()).unwrap();
        assert_eq!(
            s.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
            ["0001-first.patch", "0002-second.patch"]
        );
        let t = tree();
        apply(&s, t.path()).unwrap();
        assert_eq!(
            std::fs::read_to_string(t.path().join("f.c")).unwrap(),
            "int a;\nint bbb;\nint c;\n"
        );
    }

    #[test]
    fn failing_patch_is_named_with_its_first_failing_hunk() {
        let p = tempfile::tempdir().unwrap();
        std::fs::write(p.path().join("0001-first.patch"), FIX).unwrap();
        std::fs::write(p.path().join("0002-stale.patch"), FIX).unwrap();
        let t = tree();
        let err = apply(&series(p.path()).unwrap(), t.path()).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with("patch 0002-stale.patch does not apply: f.c: "),
            "{msg}"
        );
        assert!(
            msg.contains("Reversed (or previously applied) patch detected"),
            "{msg}"
        );

        let conflict = FIX
            .replace("-int b;", "-int z;")
            .replace("+int bb;", "+int y;");
        std::fs::write(p.path().join("0002-stale.patch"), conflict).unwrap();
        let t = tree();
        let msg = apply(&series(p.path()).unwrap(), t.path())
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("0002-stale.patch does not apply: f.c: Hunk #1 FAILED at 1."),
            "{msg}"
        );
        assert_eq!(
            std::fs::read_to_string(t.path().join("f.c")).unwrap(),
            "int a;\nint bb;\nint c;\n",
            "the failing patch left no partial change"
        );
    }

    #[test]
    fn missing_file_is_reported() {
        let t = tree();
        let p = Patch {
            name: "x.patch".into(),
            text: FIX.replace("f.c", "g.c").into_bytes(),
        };
        let msg = apply(&[p], t.path()).unwrap_err().to_string();
        assert!(msg.contains("can't find file to patch"), "{msg}");
    }

    #[test]
    fn mbox_is_split_into_messages_without_the_cover_letter() {
        let msg = |n: u32, subj: &str, body: &str| {
            format!("From 1234 Mon Sep 17 00:00:00 2001\nFrom: A <a@b>\nSubject: [PATCH {n}/2] {subj}\n\nWhy.\n---\n{body}\n")
        };
        let mbox = format!(
            "{}{}{}",
            msg(0, "cover", " f.c | 2 +-\n"),
            msg(1, "first", FIX),
            msg(2, "second", FIX2)
        );
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("series.mbox");
        std::fs::write(&f, mbox).unwrap();
        let s = series(&f).unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].name, "series.mbox#1 ([PATCH 1/2] first)");
        let t = tree();
        apply(&s, t.path()).unwrap();
        assert_eq!(
            std::fs::read_to_string(t.path().join("f.c")).unwrap(),
            "int a;\nint bbb;\nint c;\n"
        );
    }

    #[test]
    fn empty_and_missing_series_are_errors() {
        let d = tempfile::tempdir().unwrap();
        assert!(matches!(series(d.path()), Err(KernelError::EmptySeries(_))));
        assert!(matches!(
            series(&d.path().join("nope")),
            Err(KernelError::NoPatches(_))
        ));
    }
}
