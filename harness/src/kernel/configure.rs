//! Producing the final `.config`: a base (allnoconfig or the user's file), the profile
//! fragments merged on top, olddefconfig, and a check that every fragment line survived.

use super::error::{io, KernelError};
use super::fragment::{self, Fragment};
use super::kconfig;
use super::make::{Runner, ARCH};
use std::path::Path;
use std::process::Command;

pub fn configure(
    runner: &mut Runner,
    src: &Path,
    obj: &Path,
    fragments: &[Fragment],
    user_config: Option<&[u8]>,
) -> Result<(), KernelError> {
    let dot_config = obj.join(".config");
    match user_config {
        Some(text) => std::fs::write(&dot_config, text).map_err(io("writing", &dot_config))?,
        None => runner.make("make allnoconfig", src, obj, &["allnoconfig".into()])?,
    }

    // merge_config.sh wants files; keep them beside the build for anyone reading the log.
    let frag_dir = obj.join("ccwrig-fragments");
    std::fs::create_dir_all(&frag_dir).map_err(io("creating", &frag_dir))?;
    let mut merge = Command::new(src.join("scripts/kconfig/merge_config.sh"));
    // It creates its temporary files in the current directory.
    merge
        .current_dir(obj)
        .arg("-m")
        .arg("-O")
        .arg(obj)
        .arg(&dot_config);
    for (i, f) in fragments.iter().enumerate() {
        let base = Path::new(&f.name)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let path = frag_dir.join(format!("{i}-{base}"));
        std::fs::write(&path, &f.text).map_err(io("writing", &path))?;
        merge.arg(path);
    }
    runner.run("merge_config.sh", merge)?;
    runner.make("make olddefconfig", src, obj, &["olddefconfig".into()])?;

    let final_text = std::fs::read_to_string(&dot_config).map_err(io("reading", &dot_config))?;
    check(src, fragments, &final_text)
}

/// Fails naming every option that did not stick, grouped by the fragment that asked for it,
/// each with the reason Kconfig gives (its unmet dependencies).
fn check(src: &Path, fragments: &[Fragment], final_text: &str) -> Result<(), KernelError> {
    let mut bad = fragment::verify(fragments, final_text);
    if bad.is_empty() {
        return Ok(());
    }
    // One fragment serves several stable lines and users' trees: an option this kernel's
    // Kconfig does not define at all (IOMMUFD before 6.2) cannot be granted and is not asked of it.
    let defined = kconfig::defined_symbols(src, ARCH);
    bad.retain(|b| defined.contains(&b.symbol));
    if bad.is_empty() {
        return Ok(());
    }
    let config = fragment::parse_config(final_text);
    let mut names: Vec<&str> = Vec::new();
    for b in &bad {
        if !names.contains(&b.fragment.as_str()) {
            names.push(&b.fragment);
        }
    }
    let options = bad
        .iter()
        .map(|b| {
            let why = kconfig::explain(src, ARCH, &b.symbol, &config);
            match names.len() {
                1 => format!("{} ({why})", b.describe()),
                _ => format!("{}: {} ({why})", b.fragment, b.describe()),
            }
        })
        .collect();
    let fragment = names.join(" and ");
    Err(KernelError::ConfigNotStuck { fragment, options })
}
