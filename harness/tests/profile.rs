//! `ccwrig profile` on the fast kernel: a command that keeps the guest kernel busy in a known
//! place (formatting /proc/kallsyms) is seen there. This checks the whole chain: the gdbstub
//! round trips, each vCPU's PSW address, the KASLR offset from the guest's kallsyms, and the
//! lookup in vmlinux's symbol table.

mod common;

use std::process::Command;

#[test]
fn a_busy_kernel_is_seen_in_the_functions_it_runs() {
    let bz = common::fast_kernel();
    let out = common::run_dir("profile");
    let o = Command::new(env!("CARGO_BIN_EXE_ccwrig"))
        .arg("profile")
        .arg("--kernel")
        .arg(&bz)
        .arg("--out")
        .arg(&out)
        .args(["--interval-ms", "10", "--top", "40", "--"])
        .args([
            "sh",
            "-c",
            "for i in 1 2 3 4 5 6 7 8; do cat /proc/kallsyms > /dev/null; done",
        ])
        .output()
        .expect("run ccwrig profile");
    let stdout = String::from_utf8_lossy(&o.stdout);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stdout}\n{stderr}");
    let busy: usize = stdout
        .lines()
        .next()
        .and_then(|l| l.split(", ").last())
        .and_then(|b| b.strip_suffix(" busy"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no busy count in:\n{stdout}"));
    assert!(busy >= 10, "only {busy} busy samples:\n{stdout}");
    // /proc/kallsyms is formatted by kernel/kallsyms.c (s_show, kallsyms_expand_symbol,
    // get_symbol_pos, ...) through seq_file and vsnprintf; copying it out goes through the
    // user-copy and pipe code. Some of that must be among the sampled functions.
    let kallsyms_path = [
        "kallsyms",
        "s_show",
        "s_next",
        "update_iter",
        "get_symbol_pos",
        "seq_",
        "vsnprintf",
        "format_decode",
        "number",
        "string",
        "pointer",
        "copy_to_user",
        "raw_copy_to_user",
        "memcpy",
        "pipe_write",
    ];
    let hits: Vec<&str> = stdout
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(2))
        .filter(|f| kallsyms_path.iter().any(|k| f.contains(k)))
        .collect();
    assert!(
        !hits.is_empty(),
        "no function of the kallsyms path among:\n{stdout}"
    );
    let written: Vec<String> = std::fs::read_dir(&out)
        .expect("the run directory's parent")
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("profile.txt")).ok())
        .collect();
    assert_eq!(
        written,
        vec![stdout.to_string()],
        "profile.txt is what was printed"
    );
}
