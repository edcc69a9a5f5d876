#!/usr/bin/env python3
"""Merges the fuzz corpora of CI shards into one (see ci/FUZZING.md, "Sharding").

    merge-fuzz-corpus.py --out MERGED [--base BASE] SHARD_CORPUS...

Every shard started from the same BASE corpus (last night's, restored from the CI cache), so a
finding's hits are BASE's plus what each shard added on top. Per finding (crashes/<slug>/, one
per dedup key):

- the directory (program, console, repro) of the shard that saw it first is kept;
- hits = base hits + the sum over shards of (shard hits - base hits);
- first_seen is the earliest, last_seen the latest;
- a triage result is kept from the kept directory, else from any shard that has one.

Two keys with the same slug (slugs are cut at 80 characters) both stay: the second gets a
numbered slug.

The coverage inputs (inputs/<hash>.toml and <hash>.cover.json, named by the hash of the
program) are a plain union of every corpus's inputs/: the same name is the same program.
`ccwrig fuzz` re-minimises them when it loads the merged corpus (inputs whose points the
others cover are dropped). Standard library only: it runs where CI has python3.
"""

import argparse
import json
import shutil
import sys
from pathlib import Path


def entries(corpus):
    """slug -> (dir, meta) of a corpus' crashes/ directory."""
    out = {}
    crashes = Path(corpus) / "crashes"
    if not crashes.is_dir():
        return out
    for d in sorted(crashes.iterdir()):
        meta = d / "meta.json"
        if not meta.is_file():
            continue
        try:
            out[d.name] = (d, json.loads(meta.read_text()))
        except (OSError, ValueError) as e:
            sys.exit(f"merge-fuzz-corpus: {meta}: {e}")
        for field in ("key", "hits", "first_seen", "last_seen"):
            if field not in out[d.name][1]:
                sys.exit(f"merge-fuzz-corpus: {meta}: no field {field!r}")
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--base", type=Path)
    ap.add_argument("shards", nargs="+", type=Path)
    a = ap.parse_args()
    if (a.out / "crashes").exists() and any((a.out / "crashes").iterdir()):
        sys.exit(f"merge-fuzz-corpus: {a.out}/crashes is not empty")

    base_hits = {m["key"]: m["hits"] for _, m in entries(a.base).values()} if a.base else {}
    # key -> {"dir": Path, "meta": dict, "added": int}
    merged = {}
    for corpus in ([a.base] if a.base else []) + a.shards:
        is_base = a.base is not None and corpus == a.base
        for d, m in entries(corpus).values():
            key = m["key"]
            added = 0 if is_base else m["hits"] - base_hits.get(key, 0)
            cur = merged.get(key)
            if cur is None:
                merged[key] = {"dir": d, "meta": dict(m), "added": added}
                continue
            cur["added"] += added
            cm = cur["meta"]
            last_seen = max(cm["last_seen"], m["last_seen"])
            # RFC 3339 UTC strings of one format sort as times.
            if m["first_seen"] < cm["first_seen"]:
                triage = cm.get("triage")
                cur["dir"], cur["meta"] = d, dict(m)
                if cur["meta"].get("triage") is None:
                    cur["meta"]["triage"] = triage
                cm = cur["meta"]
            elif cm.get("triage") is None and m.get("triage") is not None:
                cm["triage"] = m["triage"]
            cm["last_seen"] = last_seen

    used = set()
    for key in sorted(merged):
        e = merged[key]
        slug, n = e["dir"].name, 1
        while slug in used:
            n += 1
            slug = f"{e['dir'].name}-{n}"
        used.add(slug)
        dest = a.out / "crashes" / slug
        shutil.copytree(e["dir"], dest)
        meta = e["meta"]
        meta["hits"] = base_hits.get(key, 0) + e["added"]
        (dest / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    inputs = union_inputs(([a.base] if a.base else []) + a.shards, a.out / "inputs")
    print(
        f"merge-fuzz-corpus: {len(merged)} findings and {inputs} input files "
        f"from {len(a.shards)} shard(s) in {a.out}"
    )


def union_inputs(corpora, dest):
    """Copies every corpus's inputs/ files into dest (first copy of a name wins: the name is
    the program's hash). Returns the number of files in dest."""
    dest.mkdir(parents=True, exist_ok=True)
    for corpus in corpora:
        src = Path(corpus) / "inputs"
        if not src.is_dir():
            continue
        for f in sorted(src.iterdir()):
            if f.is_file() and not (dest / f.name).exists():
                shutil.copy2(f, dest / f.name)
    return sum(1 for f in dest.iterdir() if f.is_file())


if __name__ == "__main__":
    main()
