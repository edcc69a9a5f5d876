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

/// Evaluates a Kconfig dependency expression to n/m/y (0/1/2), or `None` if it uses syntax
/// this small reader does not know (then the caller falls back to a heuristic).
fn eval(expr: &str, config: &HashMap<String, Setting>) -> Option<u8> {
    let tokens = tokenize(expr)?;
    let mut p = Parser {
        tokens,
        pos: 0,
        config,
    };
    let v = p.or()?;
    (p.pos == p.tokens.len()).then_some(v)
}

fn tokenize(expr: &str) -> Option<Vec<String>> {
    let mut out = Vec::new();
    let cs: Vec<char> = expr.chars().collect();
    let mut i = 0;
    while i < cs.len() {
        let c = cs[i];
        if c.is_whitespace() {
            i += 1;
        } else if c.is_ascii_alphanumeric() || c == '_' {
            let start = i;
            while i < cs.len() && (cs[i].is_ascii_alphanumeric() || cs[i] == '_') {
                i += 1;
            }
            out.push(cs[start..i].iter().collect());
        } else if c == '"' {
            let start = i;
            i += 1;
            while i < cs.len() && cs[i] != '"' {
                i += 1;
            }
            i += 1;
            out.push(cs[start..i.min(cs.len())].iter().collect());
        } else {
            let two: String = cs[i..(i + 2).min(cs.len())].iter().collect();
            if ["&&", "||", "!=", "<=", ">="].contains(&two.as_str()) {
                out.push(two);
                i += 2;
            } else if "!()=<>".contains(c) {
                out.push(c.to_string());
                i += 1;
            } else {
                return None;
            }
        }
    }
    Some(out)
}

struct Parser<'a> {
    tokens: Vec<String>,
    pos: usize,
    config: &'a HashMap<String, Setting>,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&str> {
        self.tokens.get(self.pos).map(|s| s.as_str())
    }

    fn or(&mut self) -> Option<u8> {
        let mut v = self.and()?;
        while self.peek() == Some("||") {
            self.pos += 1;
            v = v.max(self.and()?);
        }
        Some(v)
    }

    fn and(&mut self) -> Option<u8> {
        let mut v = self.unary()?;
        while self.peek() == Some("&&") {
            self.pos += 1;
            v = v.min(self.unary()?);
        }
        Some(v)
    }

    fn unary(&mut self) -> Option<u8> {
        match self.peek()? {
            "!" => {
                self.pos += 1;
                Some(2 - self.unary()?)
            }
            "(" => {
                self.pos += 1;
                let v = self.or()?;
                (self.peek() == Some(")")).then(|| self.pos += 1)?;
                Some(v)
            }
            _ => {
                let left = self.atom()?;
                let op = self
                    .peek()
                    .filter(|o| ["=", "!=", "<", ">", "<=", ">="].contains(o))
                    .map(str::to_string);
                let Some(op) = op else {
                    return Some(tristate(&left));
                };
                self.pos += 1;
                let right = self.atom()?;
                let ord = match (left.parse::<i64>(), right.parse::<i64>()) {
                    (Ok(a), Ok(b)) => a.cmp(&b),
                    _ => left.cmp(&right),
                };
                let holds = match op.as_str() {
                    "=" => ord.is_eq(),
                    "!=" => !ord.is_eq(),
                    "<" => ord.is_lt(),
                    ">" => ord.is_gt(),
                    "<=" => ord.is_le(),
                    _ => ord.is_ge(),
                };
                Some(if holds { 2 } else { 0 })
            }
        }
    }

    /// A symbol's value (`n` when unset), or a literal.
    fn atom(&mut self) -> Option<String> {
        let t = self.tokens.get(self.pos)?.clone();
        self.pos += 1;
        if let Some(lit) = t.strip_prefix('"') {
            return Some(lit.trim_end_matches('"').to_string());
        }
        if ["y", "m", "n"].contains(&t.as_str()) || t.chars().all(|c| c.is_ascii_digit()) {
            return Some(t);
        }
        Some(
            self.config
                .get(&t)
                .cloned()
                .flatten()
                // .config quotes strings; compare them like literals.
                .map(|v| v.trim_matches('"').to_string())
                .unwrap_or_else(|| "n".into()),
        )
    }
}

fn tristate(v: &str) -> u8 {
    match v {
        "y" => 2,
        "m" => 1,
        _ => 0,
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

/// Every symbol the Kconfig tree at `srctree` defines (`config`/`menuconfig` entries).
pub fn defined_symbols(srctree: &Path, arch: &str) -> std::collections::HashSet<String> {
    let mut reader = Reader::default();
    reader.read(srctree, &PathBuf::from(srctree).join("Kconfig"), arch, 0);
    reader.defs.into_keys().collect()
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
    let unmet: Vec<String> = defs
        .iter()
        .flat_map(|d| d.deps.iter())
        .filter(|e| match eval(e, config) {
            Some(v) => v == 0,
            None => annotate(e, config).contains("[=n]"),
        })
        .map(|e| annotate(e, config))
        .collect();
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
             if IOMMU_SUPPORT\nsource \"drivers/iommu/Kconfig\"\nendif\nconfig HIDDEN\n\tbool\n\
             config NOT_ON_S390\n\tbool \"x\"\n\tdepends on DEBUG_KERNEL && !S390\n",
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
            "CONFIG_S390=y\nCONFIG_DEBUG_KERNEL=y\n# CONFIG_IOMMU_SUPPORT is not set\n",
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
        let defined = defined_symbols(root, "s390");
        assert!(
            defined.contains("IOMMUFD") && defined.contains("S390") && !defined.contains("NOPE")
        );
        assert_eq!(
            explain(root, "s390", "NOT_ON_S390", &cfg),
            "depends on DEBUG_KERNEL [=y] && !S390 [=y]"
        );
    }

    #[test]
    fn evaluates_dependency_expressions() {
        let cfg = super::super::fragment::parse_config(
            "CONFIG_A=y\nCONFIG_M=m\nCONFIG_N=4\nCONFIG_S=\"x\"\n",
        );
        for (expr, want) in [
            ("A", 2),
            ("!A", 0),
            ("A && M", 1),
            ("B || M", 1),
            ("!(A && B)", 2),
            ("N >= 3 && S = \"x\"", 2),
            ("A != y", 0),
            ("M = m", 2),
        ] {
            assert_eq!(eval(expr, &cfg), Some(want), "{expr}");
        }
        assert_eq!(eval("A &&", &cfg), None);
    }
}
