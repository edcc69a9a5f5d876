//! Known findings that hold for every scenario: kernel bugs any program may run into (a leak
//! every close leaves behind, say). They live in `findings/known.toml` beside the scenario
//! files. A finding whose title matches one of them is reported as that known finding and does
//! not fail the run; the rest of the run is judged as usual. A scenario's own `known_finding`
//! is different: it makes the whole run that bug. The emulator's own known bugs
//! (`known_emulator.toml`, compiled in) hold for every program, in a suite or not.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{KnownFinding, ScenarioError};

/// Where the list lives, relative to the directory of the scenario files.
pub const KNOWN_EVERYWHERE: &str = "findings/known.toml";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    known: Vec<KnownFinding>,
}

/// Where the emulator's list is written, as its errors name it.
const KNOWN_EMULATOR: &str = "harness/src/scenario/known_emulator.toml";

/// QEMU's known bugs: they hold for any program ccwrig runs, wherever its file is.
pub fn known_emulator() -> Result<Vec<KnownFinding>, ScenarioError> {
    parse(
        include_str!("known_emulator.toml"),
        Path::new(KNOWN_EMULATOR),
    )
}

/// The list that applies to scenarios in `scenario_dir` (empty when there is none).
pub fn known_everywhere(scenario_dir: &Path) -> Result<Vec<KnownFinding>, ScenarioError> {
    let path: PathBuf = scenario_dir.join(KNOWN_EVERYWHERE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
        Err(e) => return Err(error(&path, None, "", e.to_string())),
    };
    parse(&text, &path)
}

fn parse(text: &str, path: &Path) -> Result<Vec<KnownFinding>, ScenarioError> {
    let f: File = toml::from_str(text).map_err(|e| {
        let pos = e.span().map(|s| line_col(text, s.start));
        error(path, pos, "", e.message().to_string())
    })?;
    for (i, k) in f.known.iter().enumerate() {
        if let Err(e) = regex::Regex::new(&k.title) {
            return Err(error(
                path,
                None,
                &format!("known[{i}].title"),
                e.to_string(),
            ));
        }
    }
    Ok(f.known)
}

fn line_col(text: &str, at: usize) -> (usize, usize) {
    let before = &text[..at.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

fn error(path: &Path, pos: Option<(usize, usize)>, field: &str, message: String) -> ScenarioError {
    ScenarioError {
        file: path.display().to_string(),
        pos,
        path: field.to_string(),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The repository's own list parses and its titles compile.
    #[test]
    fn the_repositorys_list_is_valid() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
        let list = known_everywhere(&dir).unwrap_or_else(|e| panic!("{e}"));
        assert!(!list.is_empty());
        assert!(list
            .iter()
            .all(|k| !k.note.is_empty() && !k.evidence.is_empty()));
    }

    /// The compiled-in list parses; what it knows is judged in the verdict's tests.
    #[test]
    fn the_emulators_list_is_valid() {
        let list = known_emulator().unwrap_or_else(|e| panic!("{e}"));
        assert!(!list.is_empty());
        assert!(list
            .iter()
            .all(|k| !k.note.is_empty() && !k.evidence.is_empty()));
    }

    #[test]
    fn bad_lists_say_where() {
        let p = Path::new("known.toml");
        let e = parse("[[known]]\ntitle = \"x\"\nnote = \"n\"\n", p).unwrap_err();
        assert!(e.to_string().starts_with("known.toml:"), "{e}");
        assert!(e.to_string().contains("evidence"), "{e}");
        let e = parse(
            "[[known]]\ntitle = \"(\"\nnote = \"n\"\nevidence = \"e\"\n",
            p,
        )
        .unwrap_err();
        assert!(e.to_string().contains("known[0].title"), "{e}");
        assert!(known_everywhere(Path::new("/nonexistent"))
            .unwrap()
            .is_empty());
    }
}
