//! The download set, derived from apt rather than kept by hand: the pinned packages plus the
//! library closure of the QEMU package's `Depends`, and the file name and SHA-256 apt gives
//! for each; cached per pin and apt lists.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::Path;
use std::process::Command;

use serde::Deserialize;

use super::{run, NestedError, Pin};
use crate::cache::{self, KeyBuilder};
use crate::image::{io_err, ImageError};

/// Only packages of this Debian section are followed when deriving the download set: the
/// shared libraries. Tools a library package depends on (adduser, debconf) are not needed to
/// run the binary; if one were, the soname check would say so.
const LIBRARY_SECTION: &str = "libs";

/// One package to download, as apt-get spells it (`name:arch=version`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, Deserialize)]
pub struct PkgSpec {
    pub name: String,
    pub spec: String,
}

/// The fields of each `apt-cache show` paragraph (continuation lines joined).
fn paragraphs(text: &str) -> Vec<BTreeMap<String, String>> {
    let mut out = Vec::new();
    let mut cur: BTreeMap<String, String> = BTreeMap::new();
    let mut last: Option<String> = None;
    for line in text.lines() {
        if line.trim().is_empty() {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            last = None;
        } else if line.starts_with([' ', '\t']) {
            if let Some(v) = last.as_ref().and_then(|k| cur.get_mut(k)) {
                v.push(' ');
                v.push_str(line.trim());
            }
        } else if let Some((k, v)) = line.split_once(':') {
            cur.insert(k.to_string(), v.trim().to_string());
            last = Some(k.to_string());
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Package names of a `Depends` value: version constraints dropped, the first of each set of
/// alternatives taken, `:any` qualifiers removed.
fn depends_names(v: &str) -> Vec<String> {
    v.split(',')
        .filter_map(|alt| alt.split('|').next())
        .filter_map(|d| d.split_whitespace().next())
        .map(|n| n.split(':').next().unwrap_or(n).to_string())
        .filter(|n| !n.is_empty())
        .collect()
}

fn apt_show(specs: &[String]) -> Result<Vec<BTreeMap<String, String>>, ImageError> {
    // apt-cache exits non-zero if any name is purely virtual, yet prints the others: read
    // stdout either way, the caller notices names without a paragraph.
    let out = Command::new("apt-cache")
        .arg("show")
        .arg("--no-all-versions")
        .args(specs)
        .output()
        .map_err(io_err(Path::new("apt-cache")))?;
    Ok(paragraphs(&String::from_utf8_lossy(&out.stdout)))
}

/// The download set: the pinned qemu and data packages plus the library closure of the qemu
/// package's dependencies.
pub fn resolve(pin: &Pin) -> Result<Vec<PkgSpec>, ImageError> {
    let qemu = format!("{}:{}={}", pin.qemu_package, pin.arch, pin.version);
    let data = format!("{}={}", pin.data_package, pin.version);
    let top = apt_show(std::slice::from_ref(&qemu))?;
    let Some(q) = top.first() else {
        return Err(NestedError::NoPackage { spec: qemu }.into());
    };
    let mut set = vec![
        PkgSpec {
            name: pin.qemu_package.clone(),
            spec: qemu.clone(),
        },
        PkgSpec {
            name: pin.data_package.clone(),
            spec: data,
        },
    ];
    let mut seen: BTreeSet<String> = pin.not_libraries.iter().cloned().collect();
    seen.insert(pin.qemu_package.clone());
    let mut queue: VecDeque<String> = VecDeque::new();
    let deps = |p: &BTreeMap<String, String>| {
        ["Pre-Depends", "Depends"]
            .iter()
            .filter_map(|f| p.get(*f))
            .flat_map(|v| depends_names(v))
            .collect::<Vec<_>>()
    };
    for d in deps(q) {
        if seen.insert(d.clone()) {
            queue.push_back(d);
        }
    }
    // One apt-cache call per level of the dependency graph.
    while !queue.is_empty() {
        let level: Vec<String> = queue.drain(..).collect();
        let specs: Vec<String> = level.iter().map(|n| format!("{n}:{}", pin.arch)).collect();
        for p in apt_show(&specs)? {
            let (Some(name), Some(version)) = (p.get("Package"), p.get("Version")) else {
                continue;
            };
            if p.get("Section").map(String::as_str) != Some(LIBRARY_SECTION) {
                continue;
            }
            set.push(PkgSpec {
                name: name.clone(),
                spec: format!("{name}:{}={version}", pin.arch),
            });
            for d in deps(&p) {
                if seen.insert(d.clone()) {
                    queue.push_back(d);
                }
            }
        }
    }
    set.sort();
    set.dedup();
    Ok(set)
}

/// The download set with the file name and SHA-256 apt expects for each package.
#[derive(Debug, Clone, serde::Serialize, Deserialize)]
pub struct Plan {
    pub specs: Vec<PkgSpec>,
    /// (file name, SHA-256), in apt's order.
    pub files: Vec<(String, String)>,
}

/// What apt would download for `specs`, without downloading.
fn locate(specs: &[PkgSpec]) -> Result<Vec<(String, String)>, ImageError> {
    let names: Vec<&str> = specs.iter().map(|s| s.spec.as_str()).collect();
    // `--print-uris` lines: 'URI' FILE SIZE SHA256:HEX. Only FILE and HEX are kept (the URI
    // names the configured mirror, which stays in apt's configuration).
    let listing = run(Command::new("apt-get")
        .args(["download", "--print-uris"])
        .args(&names))?;
    let mut wanted: Vec<(String, String)> = Vec::new();
    for l in listing.lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        if let [_, file, _, sum] = f.as_slice() {
            if let Some(hex) = sum.strip_prefix("SHA256:") {
                wanted.push((file.to_string(), hex.to_lowercase()));
            }
        }
    }
    if wanted.len() != specs.len() {
        let have: Vec<&str> = wanted.iter().map(|w| w.0.as_str()).collect();
        let missing: Vec<&str> = specs
            .iter()
            .filter(|s| !have.iter().any(|f| f.starts_with(&format!("{}_", s.name))))
            .map(|s| s.spec.as_str())
            .collect();
        return Err(NestedError::NoPackage {
            spec: missing.join(" "),
        }
        .into());
    }
    Ok(wanted)
}

/// Size and mtime of every file in apt's package lists: changes whenever `apt-get update`
/// brings new lists, which is when a resolution may change.
fn apt_lists_fingerprint(k: &mut KeyBuilder) {
    let dir = Path::new("/var/lib/apt/lists");
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let md = e.metadata().ok()?;
            let mtime = md
                .modified()
                .ok()?
                .duration_since(std::time::UNIX_EPOCH)
                .ok()?;
            Some(format!(
                "{:?} {} {}",
                e.file_name(),
                md.len(),
                mtime.as_nanos()
            ))
        })
        .collect();
    v.sort();
    k.str("apt-lists", &v.join("\n"));
}

/// `resolve` + `locate`, cached per pin and apt lists (apt-cache takes seconds per call).
pub fn plan(pin: &Pin, pin_text: &str) -> Result<Plan, ImageError> {
    let mut k = KeyBuilder::new("nested-plan");
    k.str("pin", pin_text);
    apt_lists_fingerprint(&mut k);
    let path = cache::dir("nested")?.join(format!("plan-{}.json", k.short()));
    if let Some(p) = std::fs::read(&path)
        .ok()
        .and_then(|b| serde_json::from_slice::<Plan>(&b).ok())
    {
        return Ok(p);
    }
    let specs = resolve(pin)?;
    let files = locate(&specs)?;
    let plan = Plan { specs, files };
    if let Ok(j) = serde_json::to_vec_pretty(&plan) {
        let tmp = crate::image::tmp_path(&path);
        if std::fs::write(&tmp, j).is_ok() {
            let _ = std::fs::rename(&tmp, &path);
        }
    }
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depends_drops_versions_alternatives_and_arch_qualifiers() {
        let v = "libaio1 (>= 0.3.93), libc6 (>= 2.34), debconf | debconf-2.0, libgcc-s1:any, qemu-system-data (>> 1:10.0.2+ds~)";
        assert_eq!(
            depends_names(v),
            [
                "libaio1",
                "libc6",
                "debconf",
                "libgcc-s1",
                "qemu-system-data"
            ]
        );
    }

    #[test]
    fn paragraphs_split_on_blank_lines_and_join_continuations() {
        let t = "Package: a\nVersion: 1\nDepends: x,\n y\n\nPackage: b\nSection: libs\n";
        let p = paragraphs(t);
        assert_eq!(p.len(), 2);
        assert_eq!(p[0]["Depends"], "x, y");
        assert_eq!(p[1]["Section"], "libs");
    }
}
