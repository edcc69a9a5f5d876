//! The coverage tables in scenarios/README.md are held to the code: the operations table
//! lists every operation exactly once, says truly whether the fuzzer generates it, and the
//! entry-point table names only operations that exist.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use ccwrig::fuzz::Generator;
use ccwrig::proto::Op;

fn readme() -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/README.md");
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The rows of the first table after the heading `## {heading}`, as cells.
fn table(text: &str, heading: &str) -> Vec<Vec<String>> {
    let start = text
        .find(&format!("\n## {heading}\n"))
        .unwrap_or_else(|| panic!("scenarios/README.md has no section {heading:?}"));
    let rest = &text[start + heading.len() + 5..];
    let end = rest.find("\n## ").unwrap_or(rest.len());
    rest[..end]
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2) // header and separator
        .map(|l| {
            l.trim_matches('|')
                .split(" | ")
                .map(|c| c.trim().to_string())
                .collect()
        })
        .collect()
}

/// The first word of every `code span` in a cell.
fn code_words(cell: &str) -> Vec<String> {
    cell.split('`')
        .skip(1)
        .step_by(2)
        .filter_map(|s| s.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

fn generated_ops() -> BTreeSet<&'static str> {
    let g = Generator::default();
    (0..2000u64)
        .flat_map(|seed| {
            g.generate(seed)
                .program
                .ops()
                .map(Op::name)
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn operations_table_lists_every_operation_and_what_the_fuzzer_generates() {
    let text = readme();
    let rows = table(&text, "Operations and the fuzzer");
    let mut listed: BTreeMap<String, bool> = BTreeMap::new();
    for r in &rows {
        let [op, fuzz] = [&r[0], r.last().expect("a row has cells")];
        let op = code_words(op)
            .into_iter()
            .next()
            .unwrap_or_else(|| panic!("row without an operation: {r:?}"));
        let fuzz = match fuzz.as_str() {
            "yes" => true,
            "no" => false,
            other => panic!("{op}: fuzzer column is {other:?}, not yes/no"),
        };
        assert!(
            listed.insert(op.clone(), fuzz).is_none(),
            "{op} listed twice"
        );
    }
    let all: BTreeSet<String> = Op::NAMES.iter().map(|s| s.to_string()).collect();
    let names: BTreeSet<String> = listed.keys().cloned().collect();
    assert_eq!(
        names.difference(&all).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "the table lists operations that do not exist"
    );
    assert_eq!(
        all.difference(&names).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "operations missing from the table"
    );
    let gen = generated_ops();
    let wrong: Vec<String> = listed
        .iter()
        .filter(|(op, says)| gen.contains(op.as_str()) != **says)
        .map(|(op, says)| format!("{op} (table: {})", if *says { "yes" } else { "no" }))
        .collect();
    assert!(
        wrong.is_empty(),
        "the fuzzer column is wrong for {wrong:?}; 2000 generated programs hold {gen:?}"
    );
}

#[test]
fn entry_point_table_names_real_operations() {
    let text = readme();
    let rows = table(&text, "The driver's user entry points");
    assert!(rows.len() >= 15, "only {} entry points", rows.len());
    let all: BTreeSet<&str> = Op::NAMES.iter().copied().collect();
    let mut used = BTreeSet::new();
    for r in &rows {
        for w in code_words(&r[2]) {
            assert!(
                all.contains(w.as_str()),
                "{:?} names `{w}`, no such operation",
                r[0]
            );
            used.insert(w);
        }
    }
    for op in [
        "set_irq",
        "dma_unmap",
        "io",
        "reset",
        "open",
        "close",
        "halt",
    ] {
        assert!(used.contains(op), "no entry point is driven by {op}");
    }
}
