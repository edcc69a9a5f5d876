//! The CI glue in ci/: merging the fuzz corpora of shards (ci/merge-fuzz-corpus.py), findings
//! and coverage inputs.

use std::path::{Path, PathBuf};
use std::process::Command;

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../ci/merge-fuzz-corpus.py")
}

/// A corpus entry as `ccwrig fuzz` writes it (fields of fuzz::corpus::Meta).
fn entry(corpus: &Path, slug: &str, key: &str, hits: u64, first: &str, last: &str, program: &str) {
    let d = corpus.join("crashes").join(slug);
    std::fs::create_dir_all(&d).unwrap();
    let meta = serde_json::json!({
        "key": key, "kind": "crash", "title": key, "hits": hits,
        "first_seen": first, "last_seen": last,
        "program_seed": 1, "campaign_seed": 2, "triage": null,
    });
    std::fs::write(d.join("meta.json"), meta.to_string()).unwrap();
    std::fs::write(d.join("program.toml"), program).unwrap();
}

fn meta(corpus: &Path, slug: &str) -> serde_json::Value {
    let t = std::fs::read_to_string(corpus.join("crashes").join(slug).join("meta.json")).unwrap();
    serde_json::from_str(&t).unwrap()
}

#[test]
fn shards_merge_onto_the_base_without_counting_its_hits_twice() {
    let t = tempfile::tempdir().unwrap();
    let (base, s0, s1, out) = (
        t.path().join("base"),
        t.path().join("s0"),
        t.path().join("s1"),
        t.path().join("out"),
    );
    // Known before the night: 5 hits. Shard 0 saw it twice more, shard 1 three times.
    entry(
        &base,
        "crash-a",
        "crash: a",
        5,
        "2026-11-01T00:00:00Z",
        "2026-11-01T00:00:00Z",
        "base",
    );
    entry(
        &s0,
        "crash-a",
        "crash: a",
        7,
        "2026-11-01T00:00:00Z",
        "2026-12-02T01:00:00Z",
        "base",
    );
    entry(
        &s1,
        "crash-a",
        "crash: a",
        8,
        "2026-11-01T00:00:00Z",
        "2026-12-02T02:00:00Z",
        "base",
    );
    // New tonight in both shards: shard 1 saw it first, its program is kept.
    entry(
        &s0,
        "crash-b",
        "crash: b",
        1,
        "2026-12-02T01:30:00Z",
        "2026-12-02T01:30:00Z",
        "s0",
    );
    entry(
        &s1,
        "crash-b",
        "crash: b",
        2,
        "2026-12-02T00:10:00Z",
        "2026-12-02T00:20:00Z",
        "s1",
    );
    // Another key whose cut slug collides.
    entry(
        &s1,
        "crash-b-long",
        "crash: c",
        1,
        "2026-12-02T00:00:00Z",
        "2026-12-02T00:00:00Z",
        "c",
    );
    entry(
        &s0,
        "crash-b-long",
        "crash: d",
        1,
        "2026-12-02T00:00:00Z",
        "2026-12-02T00:00:00Z",
        "d",
    );

    let o = Command::new("python3")
        .arg(script())
        .arg("--out")
        .arg(&out)
        .arg("--base")
        .arg(&base)
        .arg(&s0)
        .arg(&s1)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    let a = meta(&out, "crash-a");
    assert_eq!(a["hits"], 5 + 2 + 3);
    assert_eq!(a["last_seen"], "2026-12-02T02:00:00Z");
    let b = meta(&out, "crash-b");
    assert_eq!(b["hits"], 3);
    assert_eq!(b["first_seen"], "2026-12-02T00:10:00Z");
    assert_eq!(b["last_seen"], "2026-12-02T01:30:00Z");
    let kept = std::fs::read_to_string(out.join("crashes/crash-b/program.toml")).unwrap();
    assert_eq!(kept, "s1");
    let keys: Vec<String> = ["crash-b-long", "crash-b-long-2"]
        .iter()
        .map(|s| meta(&out, s)["key"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(keys, ["crash: c", "crash: d"]);

    // Merging into a corpus that already has entries would lose them: refused.
    let again = Command::new("python3")
        .arg(script())
        .arg("--out")
        .arg(&out)
        .arg(&s0)
        .output()
        .unwrap();
    assert!(!again.status.success());
}

/// The coverage inputs of several machines merge as a directory union, and the merged corpus
/// loads (re-minimised) as one.
#[test]
fn inputs_merge_as_a_directory_union_and_reload() {
    use ccwrig::coverage::Point;
    use ccwrig::fuzz::gen::Generator;
    use ccwrig::fuzz::inputs::{Cover, Inputs, Origin};

    let t = tempfile::tempdir().unwrap();
    let (s0, s1, out) = (
        t.path().join("s0"),
        t.path().join("s1"),
        t.path().join("out"),
    );
    let g = Generator::default();
    let cover = |cells: &[(u8, u8)]| Cover {
        coverage: cells
            .iter()
            .map(|&(state, event)| Point::Fsm {
                state,
                event,
                next: state,
            })
            .collect(),
        origin: Origin::Fresh,
        program_seed: 0,
        kernel: None,
        wall_ms: None,
    };
    {
        let (mut i0, _) = Inputs::open(&s0).unwrap();
        i0.add(&g.generate(1).program, cover(&[(1, 4), (2, 5)]))
            .unwrap();
        i0.add(&g.generate(2).program, cover(&[(2, 1)])).unwrap();
        let (mut i1, _) = Inputs::open(&s1).unwrap();
        // The same program as on s0, and one the first covers.
        i1.add(&g.generate(1).program, cover(&[(1, 4), (2, 5)]))
            .unwrap();
        i1.add(&g.generate(3).program, cover(&[(1, 4)])).unwrap();
    }
    let o = Command::new("python3")
        .arg(script())
        .arg("--out")
        .arg(&out)
        .arg(&s0)
        .arg(&s1)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(std::fs::read_dir(out.join("inputs")).unwrap().count(), 6);
    let (merged, loaded) = Inputs::open(&out).unwrap();
    assert_eq!((loaded.read, loaded.redundant), (3, 1));
    assert_eq!(merged.len(), 2);
    assert_eq!(merged.covered().fsm_cells(), 3);
}
