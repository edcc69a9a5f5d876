//! `ccwrig repro-c`: a scenario as one standalone C file that does what the guest agent would
//! do for it — the actors as threads meeting at their barriers, the recorded seed's jitter,
//! each operation as the agent's own syscalls and ioctls, each step's result printed — so a
//! maintainer can run it on an LPAR or a z/VM guest without ccwrig. Host steps (hot-unplug,
//! replug, stop/cont) run a command the user names or pause for the operator.
//!
//! The C is assembled from fixed parts (`runtime.c`: the operations; `main.c`: the driver),
//! the ABI section generated from the agent's definitions ([`abi`]), and the scenario as
//! tables of steps.

pub mod abi;
pub mod build;
pub mod guest;
mod step_init;

use std::collections::BTreeMap;
use std::fmt::Write;

use ccwrig_proto::Op;

use crate::scenario::{Scenario, Step};
use step_init::{step_init, unsupported};

const RUNTIME: &str = include_str!("runtime.c");
const MAIN: &str = include_str!("main.c");

/// The host-side operations a `--host-cmd` may name.
pub const HOST_OPS: &[&str] = &["device_del", "device_add", "stop", "cont", "system_reset"];

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(
        "{scenario}: {actor} step {index} (line {line}): the C exporter cannot express `{op}`: {why}"
    )]
    Unsupported {
        scenario: String,
        actor: String,
        index: usize,
        line: usize,
        op: &'static str,
        why: &'static str,
    },
    #[error("--host-cmd {0}: no such host operation (use one of: {ops})", ops = HOST_OPS.join(", "))]
    UnknownHostOp(String),
    #[error(
        "{scenario}: the scenario has jitter but no seed; pass --seed (a run's scenario.toml \
         records it)"
    )]
    NoSeed { scenario: String },
    #[error(
        "{scenario}: a phased scenario ({phases} programs in one VM); the C exporter writes one \
         program: export its phases one by one and run them in order on one machine"
    )]
    Phased { scenario: String, phases: usize },
}

/// What the export needs besides the scenario.
#[derive(Debug, Clone, Default)]
pub struct ExportOptions {
    /// Overrides the scenario's recorded seed.
    pub seed: Option<u64>,
    /// Host operation -> shell command run for it (built into the C; overridable at run time).
    pub host_cmds: BTreeMap<String, String>,
}

/// Writes the C reproducer of `sc`.
pub fn export(sc: &Scenario, opts: &ExportOptions) -> Result<String, ExportError> {
    if !sc.history.is_empty() {
        return Err(ExportError::Phased {
            scenario: sc.name.clone(),
            phases: sc.history.len() + 1,
        });
    }
    for k in opts.host_cmds.keys() {
        if !HOST_OPS.contains(&k.as_str()) {
            return Err(ExportError::UnknownHostOp(k.clone()));
        }
    }
    // Without jitter the seed decides nothing, and none is needed.
    let jittered = sc.race.jitter_ms.1 > 0
        || all_steps(sc)
            .any(|(_, _, s)| matches!(s, Step::Op(o) if o.jitter_ms.is_some_and(|j| j.1 > 0)));
    let seed = match opts.seed.or(sc.race.seed) {
        Some(s) => s,
        None if !jittered => 0,
        None => {
            return Err(ExportError::NoSeed {
                scenario: sc.name.clone(),
            })
        }
    };
    let mut o = String::new();
    prologue(&mut o, sc, seed, opts);
    o.push_str(&abi::c_section());
    errno_table(&mut o);
    o.push_str(RUNTIME);
    scenario_tables(&mut o, sc, seed, opts)?;
    o.push_str(MAIN);
    Ok(o)
}

/// A C string literal.
fn c_str(s: &str) -> String {
    let mut o = String::from("\"");
    for b in s.bytes() {
        match b {
            b'"' => o.push_str("\\\""),
            b'\\' => o.push_str("\\\\"),
            b'\n' => o.push_str("\\n"),
            b'\t' => o.push_str("\\t"),
            // `??x` would be a trigraph to a strict compiler
            b'?' => o.push_str("\\?"),
            0x20..=0x7e => o.push(b as char),
            _ => {
                let _ = write!(o, "\\{b:03o}");
            }
        }
    }
    o.push('"');
    o
}

fn c_opt(s: Option<&str>) -> String {
    s.map_or_else(|| "NULL".into(), c_str)
}

/// Text that is safe inside a C block comment.
fn comment_text(s: &str) -> String {
    s.replace("*/", "* /")
}

/// A C identifier from a scenario name (letters, digits, `_`, `-`).
fn ident(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// The step as ccwrig's reports print it: `reset handle=d`.
pub fn op_text(op: &Op) -> String {
    let v = serde_json::to_value(op).unwrap_or_default();
    let mut s = op.name().to_string();
    if let Some(m) = v.as_object() {
        for (k, val) in m.iter().filter(|(k, _)| k.as_str() != "op") {
            match val {
                serde_json::Value::String(x) => {
                    let _ = write!(s, " {k}={x}");
                }
                other => {
                    let _ = write!(s, " {k}={other}");
                }
            }
        }
    }
    s
}

fn prologue(o: &mut String, sc: &Scenario, seed: u64, opts: &ExportOptions) {
    let file = sc
        .path
        .as_ref()
        .and_then(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| format!("{}.toml", sc.name));
    let _ = writeln!(
        o,
        "/*\n * Standalone reproducer for the ccwrig scenario `{}` ({file}), seed {seed}.\n *",
        sc.name
    );
    for l in comment_text(sc.description.trim()).lines() {
        let _ = writeln!(o, " * {l}").map(|_| ());
    }
    o.push_str(
        " *\n * Build (s390x, no ccwrig needed):\n \
         *   s390x-linux-gnu-gcc -O2 -Wall -static -pthread -o repro repro.c\n \
         * Run as root on a Linux with vfio_ccw (and the subchannels below):\n \
         *   ./repro [--host-cmd OP=COMMAND]... [--kmsg]\n *\n",
    );
    o.push_str(" * The machine the scenario ran on (subchannel ids follow the device order):\n");
    for (i, d) in sc.machine.devices.iter().enumerate() {
        let _ = writeln!(
            o,
            " *   virtio-ccw device {} devno {} -> subchannel {}",
            d.id,
            d.devno,
            crate::scenario::Machine::schid_of(i)
        );
    }
    o.push_str(" * On another machine, change the subchannel ids in the step tables at the end.\n");
    let host: Vec<&Op> = all_steps(sc)
        .filter_map(|(_, _, s)| s.op())
        .filter(|op| HOST_OPS.contains(&op.name()))
        .collect();
    if !host.is_empty() {
        o.push_str(
            " *\n * Host steps (done by the hypervisor, not by this program): each runs the command\n \
             * given with --host-cmd OP=COMMAND, or else pauses until the operator presses Enter.\n",
        );
        for op in host {
            let cmd = opts.host_cmds.get(op.name());
            let _ = writeln!(
                o,
                " *   {}{}",
                op_text(op),
                cmd.map(|c| format!(" -> built in: {}", comment_text(c)))
                    .unwrap_or_default()
            );
        }
    }
    o.push_str(" *\n * What ccwrig's verdict also checks for this scenario (not judged here):\n");
    let e = &sc.expect;
    let crash = match &e.crash {
        crate::scenario::CrashExpect::None => "none (no oops, panic, WARN or hang)".to_string(),
        crate::scenario::CrashExpect::TitleRegex(r) => format!("one whose title matches /{r}/"),
    };
    let _ = writeln!(o, " *   crash: {}", comment_text(&crash));
    if !e.dmesg_contains.is_empty() {
        let _ = writeln!(
            o,
            " *   kernel log contains: {}",
            comment_text(&e.dmesg_contains.join(" | "))
        );
    }
    if !e.fsm_final.is_empty() {
        let _ = writeln!(o, " *   final vfio_ccw FSM state: {:?}", e.fsm_final);
    }
    o.push_str(
        " *\n * Generated by `ccwrig repro-c`. Every step prints its outcome and whether it was\n \
         * expected; the exit status is 1 if any outcome was not.\n */\n\n",
    );
    for h in [
        "#define _GNU_SOURCE",
        "#include <dirent.h>",
        "#include <errno.h>",
        "#include <fcntl.h>",
        "#include <poll.h>",
        "#include <pthread.h>",
        "#include <stdarg.h>",
        "#include <stdint.h>",
        "#include <stdio.h>",
        "#include <stdlib.h>",
        "#include <string.h>",
        "#include <sys/eventfd.h>",
        "#include <sys/ioctl.h>",
        "#include <sys/mman.h>",
        "#include <sys/random.h>",
        "#include <sys/stat.h>",
        "#include <sys/syscall.h>",
        "#include <sys/utsname.h>",
        "#include <sys/wait.h>",
        "#include <time.h>",
        "#include <unistd.h>",
    ] {
        o.push_str(h);
        o.push('\n');
    }
    o.push('\n');
}

/// Errno names as ccwrig's protocol spells them, so outcomes read the same as in a run.
fn errno_table(o: &mut String) {
    o.push_str("static const struct { int code; const char *name; } errno_names[] = {\n");
    for code in 1..1024 {
        let name = ccwrig_proto::errno_name(code);
        if ccwrig_proto::errno_code(&name) == Some(code) {
            let _ = writeln!(o, "\t{{ {code}, \"{name}\" }},");
        }
    }
    o.push_str("};\n\n");
}

/// (actor name, index, step) of setup, actors and teardown, in file order.
fn all_steps(sc: &Scenario) -> impl Iterator<Item = (&str, usize, &Step)> {
    let setup = sc.setup.iter().enumerate().map(|(i, s)| ("setup", i, s));
    let actors = sc.actors.iter().flat_map(|a| {
        a.steps
            .iter()
            .enumerate()
            .map(|(i, s)| (a.name.as_str(), i, s))
    });
    let teardown = sc
        .teardown
        .iter()
        .enumerate()
        .map(|(i, s)| ("teardown", i, s));
    setup.chain(actors).chain(teardown)
}

/// A step table: `static const struct step NAME[] = { ... };` (argv arrays first).
fn step_table(
    o: &mut String,
    sc: &Scenario,
    name: &str,
    who: &str,
    steps: &[Step],
) -> Result<(), ExportError> {
    let mut body = String::new();
    for (i, st) in steps.iter().enumerate() {
        match st {
            Step::Barrier { name: b, line } => {
                let _ = writeln!(
                    body,
                    "\t{{ .op = OP_BARRIER, .what = {}, .line = {line}, .barrier = {} }},",
                    c_str(&format!("barrier {b}")),
                    c_str(b)
                );
            }
            Step::Op(s) => {
                if let Some(why) = unsupported(&s.op) {
                    return Err(ExportError::Unsupported {
                        scenario: sc.name.clone(),
                        actor: who.to_string(),
                        index: i,
                        line: s.line,
                        op: s.op.name(),
                        why,
                    });
                }
                let mut argv_name = None;
                if let Op::Exec { argv } = &s.op {
                    let n = format!("{name}_argv_{i}");
                    let items: Vec<String> = argv.iter().map(|a| c_str(a)).collect();
                    let _ = writeln!(
                        o,
                        "static const char *const {n}[] = {{ {}, NULL }};",
                        items.join(", ")
                    );
                    argv_name = Some(n);
                }
                body.push_str(&step_init(s, sc, argv_name.as_deref()));
            }
        }
    }
    if steps.is_empty() {
        let _ = writeln!(o, "static const struct step {name}[1]; /* none */");
    } else {
        let _ = write!(o, "static const struct step {name}[] = {{\n{body}}};\n");
    }
    Ok(())
}

fn scenario_tables(
    o: &mut String,
    sc: &Scenario,
    seed: u64,
    opts: &ExportOptions,
) -> Result<(), ExportError> {
    o.push_str(
        "\n/* ====================================================================================\n \
         * The scenario: its steps as tables, read by the driver below.\n \
         * ==================================================================================== */\n\n",
    );
    let repeat = sc.race.repeat.max(1);
    let _ = writeln!(o, "#define SCENARIO {}", c_str(&sc.name));
    let _ = writeln!(o, "#define SEED {seed}ULL");
    let _ = writeln!(o, "#define REPEAT {repeat}");
    let _ = writeln!(
        o,
        "#define LATE_ALLOWANCE_MS {} /* how long blocked steps may take to finish */\n",
        crate::run::LATE_ALLOWANCE.as_millis()
    );

    o.push_str("static const struct { const char *id, *devno; } machine_devices[] = {\n");
    for d in &sc.machine.devices {
        let _ = writeln!(o, "\t{{ {}, {} }},", c_str(&d.id), c_str(&d.devno));
    }
    if sc.machine.devices.is_empty() {
        o.push_str("\t{ \"\", \"\" },\n");
    }
    let _ = writeln!(o, "}};\n#define NDEVICES {}\n", sc.machine.devices.len());

    o.push_str(
        "/* The command run for each host step (NULL: pause for the operator); --host-cmd\n \
         * overrides them. */\nstatic struct host_cmd host_cmds[] = {\n",
    );
    for op in HOST_OPS {
        let _ = writeln!(
            o,
            "\t{{ {}, {} }},",
            c_str(op),
            c_opt(opts.host_cmds.get(*op).map(String::as_str))
        );
    }
    let _ = writeln!(o, "}};\n#define NHOST_CMDS {}\n", HOST_OPS.len());

    step_table(o, sc, "setup_steps", "setup", &sc.setup)?;
    let _ = writeln!(o, "#define NSETUP {}\n", sc.setup.len());

    // Barriers: how many actors meet at each (an actor counts once however often it waits).
    let mut meet: BTreeMap<&str, usize> = BTreeMap::new();
    for a in &sc.actors {
        let mut seen = std::collections::BTreeSet::new();
        for s in &a.steps {
            if let Step::Barrier { name, .. } = s {
                if seen.insert(name.as_str()) {
                    *meet.entry(name.as_str()).or_default() += 1;
                }
            }
        }
    }

    let mut actor_rows = Vec::new();
    for a in &sc.actors {
        let id = ident(&a.name);
        let table = format!("actor_{id}");
        step_table(o, sc, &table, &a.name, &a.steps)?;
        // The delay before each step that follows a barrier, from the seed, exactly as the
        // runner draws it: one row per repetition.
        let n = a.steps.len();
        let mut rows: Vec<Vec<u64>> = Vec::new();
        for rep in 0..repeat {
            let mut row = vec![0u64; n];
            let mut after_barrier = false;
            for (i, st) in a.steps.iter().enumerate() {
                match st {
                    Step::Barrier { .. } => after_barrier = true,
                    Step::Op(s) => {
                        if after_barrier {
                            row[i] = crate::run::jitter(
                                seed,
                                rep,
                                &a.name,
                                i,
                                s.jitter_ms.unwrap_or(sc.race.jitter_ms),
                            );
                        }
                        after_barrier = false;
                    }
                }
            }
            rows.push(row);
        }
        let jitter = if rows.iter().flatten().any(|j| *j > 0) {
            let name = format!("jitter_{id}");
            let _ = writeln!(
                o,
                "/* jitter (ms) before {}'s steps, one row per repetition (seed {seed}) */\n\
                 static const unsigned int {name}[] = {{",
                a.name
            );
            for r in &rows {
                let cells: Vec<String> = r.iter().map(|j| j.to_string()).collect();
                let _ = writeln!(o, "\t{},", cells.join(", "));
            }
            o.push_str("};\n");
            name
        } else {
            "NULL".into()
        };
        actor_rows.push(format!(
            "\t{{ {}, {table}, {n}, {jitter} }},",
            c_str(&a.name)
        ));
        o.push('\n');
    }
    let _ = writeln!(
        o,
        "static const struct actor actors[] = {{\n{}\n}};\n#define NACTORS {}\n",
        actor_rows.join("\n"),
        sc.actors.len()
    );

    o.push_str("static struct barrier barriers[] = {\n");
    for (b, n) in &meet {
        let _ = writeln!(o, "\t{{ .name = {}, .count = {n} }},", c_str(b));
    }
    if meet.is_empty() {
        o.push_str("\t{ .name = \"\", .count = 1 },\n");
    }
    let _ = writeln!(o, "}};\n#define NBARRIERS {}\n", meet.len());

    step_table(o, sc, "teardown_steps", "teardown", &sc.teardown)?;
    let _ = writeln!(o, "#define NTEARDOWN {}\n", sc.teardown.len());
    let _ = writeln!(
        o,
        "static const struct step final_cleanup = {{ .op = OP_CLEANUP, .what = \"cleanup\", \
         .expect = \"ok\", .deadline_ms = 10000, .ms = {}, .driver = \"{}\" }};\n",
        ccwrig_proto::default_online_wait_ms(),
        sc.machine.rest.driver()
    );
    Ok(())
}

#[cfg(test)]
mod tests;
