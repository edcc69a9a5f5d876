//! Why an option did not stick: a small reader of the Kconfig tree that collects, per symbol,
//! its `depends on` expressions including those of enclosing `if`/`menu`/`choice` blocks, and
//! annotates each referenced symbol with its value in the final config (like menuconfig's
//! "Depends on: X [=n]"). Only run after a failure, so it favours simplicity over speed.

use super::fragment::Setting;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Default, Clone)]
struct Definition {
    deps: Vec<String>,
    has_prompt: bool,
}

#[derive(Default)]
struct Reader {
    defs: HashMap<String, Vec<Definition>>,
    /// Conditions of the enclosing `if`, `menu` and `choice` blocks, innermost last. They span
    /// `source`d files, which is why the tree is read from the top-level Kconfig down.
    frames: Vec<Vec<String>>,
}

enum Block {
    None,
    Config(String, Definition),
    /// A menu or choice header, whose `depends on` lines apply to everything inside it.
    Frame,
}

impl Reader {
    fn read(&mut self, srctree: &Path, file: &Path, arch: &str, depth: usize) {
        let Ok(text) = std::fs::read_to_string(file) else {
            return;
        };
        if depth > 64 {
            return;
        }
        let mut block = Block::None;
        let mut in_help = false;
        for raw in text.lines() {
            let line = raw.trim();
            let indented = raw.starts_with([' ', '\t']);
            if in_help {
                if line.is_empty() || indented {
                    continue;
                }
                in_help = false;
            }
            let (word, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
            let rest = rest.trim();
            match word {
                "config" | "menuconfig" => {
                    self.finish(std::mem::replace(&mut block, Block::None));
                    block = Block::Config(rest.to_string(), Definition::default());
                }
                "menu" | "choice" => {
                    self.finish(std::mem::replace(&mut block, Block::None));
                    self.frames.push(Vec::new());
                    block = Block::Frame;
                }
                "if" => {
                    self.finish(std::mem::replace(&mut block, Block::None));
                    self.frames.push(vec![rest.to_string()]);
                }
                "endif" | "endmenu" | "endchoice" => {
                    self.finish(std::mem::replace(&mut block, Block::None));
                    self.frames.pop();
                }
                "source" | "osource" | "rsource" | "orsource" => {
                    self.finish(std::mem::replace(&mut block, Block::None));
                    let name = rest.trim_matches('"').replace("$(SRCARCH)", arch);
                    let base = if word.starts_with('r') || word.starts_with("or") {
                        file.parent().unwrap_or(srctree).to_path_buf()
                    } else {
                        srctree.to_path_buf()
                    };
                    self.read(srctree, &base.join(name), arch, depth + 1);
                }
                "comment" | "mainmenu" => self.finish(std::mem::replace(&mut block, Block::None)),
                "help" | "---help---" => in_help = true,
                "depends" => {
                    let expr = rest.strip_prefix("on").unwrap_or(rest).trim().to_string();
                    match &mut block {
                        Block::Config(_, def) => def.deps.push(expr),
                        Block::Frame => {
                            if let Some(f) = self.frames.last_mut() {
                                f.push(expr)
                            }
                        }
                        Block::None => {}
                    }
                }
                "bool" | "tristate" | "string" | "int" | "hex" | "prompt" => {
                    if let Block::Config(_, def) = &mut block {
                        def.has_prompt |= word == "prompt" || rest.starts_with('"');
                    }
                }
                _ => {}
            }
        }
        self.finish(block);
    }

    fn finish(&mut self, block: Block) {
        if let Block::Config(sym, mut def) = block {
            let inherited: Vec<String> = self.frames.iter().flatten().cloned().collect();
            def.deps.splice(0..0, inherited);
            self.defs.entry(sym).or_default().push(def);
        }
    }
}

/// Annotates the symbols of a dependency expression with their values, e.g.
/// `IOMMUFD && !SPAPR_TCE_IOMMU` → `IOMMUFD [=n] && !SPAPR_TCE_IOMMU [=n]`.
fn annotate(expr: &str, config: &HashMap<String, Setting>) -> String {
    let mut out = String::new();
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        if word.is_empty() {
            return;
        }
        let is_symbol = word.chars().any(|c| c.is_ascii_uppercase())
            && word
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
        out.push_str(word);
        if is_symbol {
            let val = config.get(word.as_str()).cloned().flatten();
            out.push_str(&format!(" [={}]", val.as_deref().unwrap_or("n")));
        }
        word.clear();
    };
    for c in expr.chars() {
        if c.is_ascii_alphanumeric() || c == '_' {
            word.push(c);
        } else {
            flush(&mut word, &mut out);
            out.push(c);
        }
    }
    flush(&mut word, &mut out);
    out
}

/// A short reason why `symbol` could not get the wanted value, from the Kconfig tree at
/// `srctree` and the final config.
pub fn explain(
    srctree: &Path,
    arch: &str,
    symbol: &str,
    config: &HashMap<String, Setting>,
) -> String {
    let mut reader = Reader::default();
    reader.read(srctree, &PathBuf::from(srctree).join("Kconfig"), arch, 0);
    let Some(defs) = reader.defs.get(symbol) else {
        return "no such symbol in this kernel".to_string();
    };
    let deps: Vec<String> = defs
        .iter()
        .flat_map(|d| d.deps.iter())
        .map(|e| annotate(e, config))
        .collect();
    let unmet: Vec<&String> = deps.iter().filter(|d| d.contains("[=n]")).collect();
    let mut why = if unmet.is_empty() {
        String::new()
    } else {
        format!(
            "depends on {}",
            unmet
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(" && ")
        )
    };
    if !defs.iter().any(|d| d.has_prompt) {
        if !why.is_empty() {
            why.push_str("; ");
        }
        why.push_str("has no prompt, so only a select can set it");
    }
    if why.is_empty() {
        why = "dependencies look met; a select or range may override it".to_string();
    }
    why
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explains_unmet_dependencies_through_if_blocks_and_sources() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("drivers/iommu")).unwrap();
        std::fs::create_dir_all(root.join("arch/s390")).unwrap();
        std::fs::write(
            root.join("Kconfig"),
            "mainmenu \"x\"\nsource \"arch/$(SRCARCH)/Kconfig\"\nmenuconfig IOMMU_SUPPORT\n\tbool \"IOMMU\"\n\
             if IOMMU_SUPPORT\nsource \"drivers/iommu/Kconfig\"\nendif\nconfig HIDDEN\n\tbool\n",
        )
        .unwrap();
        std::fs::write(
            root.join("arch/s390/Kconfig"),
            "config S390\n\tdef_bool y\n",
        )
        .unwrap();
        std::fs::write(
            root.join("drivers/iommu/Kconfig"),
            "config IOMMUFD\n\ttristate \"iommufd\"\n\tdepends on S390\n\thelp\n\t  depends on NOTHING\n",
        )
        .unwrap();
        let cfg = super::super::fragment::parse_config(
            "CONFIG_S390=y\n# CONFIG_IOMMU_SUPPORT is not set\n",
        );
        assert_eq!(
            explain(root, "s390", "IOMMUFD", &cfg),
            "depends on IOMMU_SUPPORT [=n]"
        );
        assert_eq!(
            explain(root, "s390", "HIDDEN", &cfg),
            "has no prompt, so only a select can set it"
        );
        assert_eq!(
            explain(root, "s390", "NOPE", &cfg),
            "no such symbol in this kernel"
        );
    }
}
