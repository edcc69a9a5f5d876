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

use std::collections::BTreeMap;
use std::fmt::Write;

use ccwrig_proto::{
    BadInputKind, FdPart, IrqAction, IrqKind, KmemleakAction, Op, OpenVia, RegionKind,
    RequestPolicy,
};

use crate::scenario::{OpStep, Scenario, Step};

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

fn host_text(op: &Op, sc: &Scenario) -> String {
    let devno = |id: &str| {
        sc.machine
            .devices
            .iter()
            .find(|d| d.id == id)
            .map(|d| d.devno.clone())
            .unwrap_or_default()
    };
    match op {
        Op::DeviceDel { device } => format!(
            "hot-unplug the ccw device {device} (devno {}) from this guest and wait until the \
             guest has let it go (QEMU: device_del id={device}, then DEVICE_DELETED)",
            devno(device)
        ),
        Op::DeviceAdd { device } => format!(
            "plug the ccw device {device} back into this guest with devno {} (QEMU: device_add \
             with the same id and devno)",
            devno(device)
        ),
        Op::Stop => "pause all vCPUs of this guest (QEMU: stop). This program is frozen until \
                     they run again, so the command must resume them itself (the next host step \
                     is then a no-op)"
            .into(),
        Op::Cont => "resume the vCPUs of this guest (QEMU: cont)".into(),
        Op::SystemReset => {
            "reset the whole guest (QEMU: system_reset); this program ends with it".into()
        }
        _ => String::new(),
    }
}

/// Why an op has no C form; None when it has one.
fn unsupported(op: &Op) -> Option<&'static str> {
    Some(match op {
        Op::Poweroff => "it would power off the machine running the reproducer",
        Op::InnerStart { .. }
        | Op::InnerQmp { .. }
        | Op::InnerQuit { .. }
        | Op::InnerSignal { .. }
        | Op::InnerDeviceDel { .. }
        | Op::InnerDeviceAdd { .. }
        | Op::InnerSystemReset { .. }
        | Op::InnerWait { .. } => {
            "inner QEMU steps need the nested image's qemu-system-s390x and a QMP client"
        }
        _ => return None,
    })
}

/// The C initializer of one op step.
fn step_init(s: &OpStep, sc: &Scenario, argv_name: Option<&str>) -> String {
    let mut f: Vec<String> = Vec::new();
    let kind = |k: &str| format!(".op = OP_{}", k);
    let q = |k: &str, v: &str| format!(".{k} = {}", c_str(v));
    match &s.op {
        Op::ListSubchannels => f.push(kind("LIST_SUBCHANNELS")),
        Op::Bind { schid, driver } => {
            f.extend([kind("BIND"), q("schid", schid), q("driver", driver)])
        }
        Op::Unbind { schid } => f.extend([kind("UNBIND"), q("schid", schid)]),
        Op::Rescan => f.push(kind("RESCAN")),
        Op::MdevCreate { parent, mdev, uuid } => {
            f.extend([kind("MDEV_CREATE"), q("schid", parent), q("mdev", mdev)]);
            if let Some(u) = uuid {
                f.push(q("uuid", u));
            }
        }
        Op::MdevRemove { mdev } => f.extend([kind("MDEV_REMOVE"), q("mdev", mdev)]),
        Op::AvailableInstances { parent } => {
            f.extend([kind("AVAILABLE_INSTANCES"), q("schid", parent)])
        }
        Op::Open { mdev, handle, via } => f.extend([
            kind("OPEN"),
            q("mdev", mdev),
            q("handle", handle),
            format!(
                ".via = {}",
                match via {
                    OpenVia::Group => "VIA_GROUP",
                    OpenVia::Iommufd => "VIA_IOMMUFD",
                }
            ),
        ]),
        Op::Close { handle, order } => {
            let parts: Vec<&str> = order
                .iter()
                .map(|p| match p {
                    FdPart::Device => "PART_DEVICE",
                    FdPart::Group => "PART_GROUP",
                    FdPart::Container => "PART_CONTAINER",
                })
                .collect();
            f.extend([
                kind("CLOSE"),
                q("handle", handle),
                format!(".order = {{ {} }}", parts.join(", ")),
                format!(".norder = {}", parts.len()),
            ]);
        }
        Op::GetInfo { handle } => f.extend([kind("GET_INFO"), q("handle", handle)]),
        Op::Consumer { handle, on_request } => f.extend([
            kind("CONSUMER"),
            q("handle", handle),
            format!(
                ".on_request = {}",
                match on_request {
                    RequestPolicy::Close => "ON_REQUEST_CLOSE",
                    RequestPolicy::Reset => "ON_REQUEST_RESET",
                    RequestPolicy::Ignore => "ON_REQUEST_IGNORE",
                }
            ),
        ]),
        Op::Reset { handle } => f.extend([kind("RESET"), q("handle", handle)]),
        Op::SetIrq {
            handle,
            irq,
            action,
            count,
        } => f.extend([
            kind("SET_IRQ"),
            q("handle", handle),
            format!(
                ".irq = {}",
                match irq {
                    IrqKind::Io => "VFIO_CCW_IO_IRQ_INDEX",
                    IrqKind::Crw => "VFIO_CCW_CRW_IRQ_INDEX",
                    IrqKind::Req => "VFIO_CCW_REQ_IRQ_INDEX",
                }
            ),
            format!(
                ".irq_action = {}",
                match action {
                    IrqAction::Register => "IRQ_REGISTER",
                    IrqAction::Remove => "IRQ_REMOVE",
                    IrqAction::Signal => "IRQ_SIGNAL",
                }
            ),
            format!(".count = {count}"),
        ]),
        Op::DmaUnmap {
            handle,
            count,
            remap,
        } => f.extend([
            kind("DMA_UNMAP"),
            q("handle", handle),
            format!(".count = {count}"),
            format!(".remap = {}", u8::from(*remap)),
        ]),
        Op::Io {
            handle,
            count,
            suspend,
            irq_wait_ms,
        } => f.extend([
            kind("IO"),
            q("handle", handle),
            format!(".count = {count}"),
            format!(".suspend = {}", u8::from(*suspend)),
            format!(".ms = {irq_wait_ms}"),
        ]),
        Op::IoStall { handle, wait_ms } => f.extend([
            kind("IO_STALL"),
            q("handle", handle),
            format!(".ms = {wait_ms}"),
        ]),
        Op::IoRelease {
            handle,
            irq_wait_ms,
        } => f.extend([
            kind("IO_RELEASE"),
            q("handle", handle),
            format!(".ms = {irq_wait_ms}"),
        ]),
        Op::Halt { handle } => f.extend([kind("HALT"), q("handle", handle)]),
        Op::Clear { handle } => f.extend([kind("CLEAR"), q("handle", handle)]),
        Op::ReadRegion { handle, region } => f.extend([
            kind("READ_REGION"),
            q("handle", handle),
            format!(
                ".region = {}",
                match region {
                    RegionKind::Io => "REGION_IO",
                    RegionKind::Async => "REGION_ASYNC",
                    RegionKind::Schib => "REGION_SCHIB",
                    RegionKind::Crw => "REGION_CRW",
                }
            ),
        ]),
        Op::BadInput { handle, kind: k } => f.extend([
            kind("BAD_INPUT"),
            q("handle", handle),
            format!(
                ".bad = {}",
                match k {
                    BadInputKind::IoRegionOffset => "BAD_IO_REGION_OFFSET",
                    BadInputKind::IoRegionShort => "BAD_IO_REGION_SHORT",
                    BadInputKind::UnmappedCpa => "BAD_UNMAPPED_CPA",
                    BadInputKind::Format0Orb => "BAD_FORMAT0_ORB",
                    BadInputKind::AsyncBadCommand => "BAD_ASYNC_BAD_COMMAND",
                    BadInputKind::BadRegionIndex => "BAD_REGION_INDEX",
                }
            ),
        ]),
        Op::Sleep { ms } => f.extend([kind("SLEEP"), format!(".ms = {ms}")]),
        Op::Snapshot => f.push(kind("SNAPSHOT")),
        Op::Mark { text } => f.extend([kind("MARK"), q("text", text)]),
        Op::Kmemleak { action } => f.extend([
            kind("KMEMLEAK"),
            format!(
                ".kmemleak_clear = {}",
                u8::from(*action == KmemleakAction::Clear)
            ),
        ]),
        Op::Sysrq { key } => f.extend([
            kind("SYSRQ"),
            format!(".key = {}", c_str(&key.to_string()).replace('"', "'")),
        ]),
        Op::Exec { .. } => f.extend([
            kind("EXEC"),
            format!(".argv = {}", argv_name.unwrap_or("NULL")),
        ]),
        Op::Cleanup => f.push(kind("CLEANUP")),
        Op::DeviceDel { device } | Op::DeviceAdd { device } => f.extend([
            kind("HOST"),
            q("host_op", s.op.name()),
            q("device", device),
            q("text", &host_text(&s.op, sc)),
        ]),
        Op::Stop | Op::Cont | Op::SystemReset => f.extend([
            kind("HOST"),
            q("host_op", s.op.name()),
            q("text", &host_text(&s.op, sc)),
        ]),
        // Refused before any initializer is written (see `unsupported`). Listed, not a
        // wildcard: a new op must be given a C form or be refused here.
        Op::Poweroff
        | Op::InnerStart { .. }
        | Op::InnerQmp { .. }
        | Op::InnerQuit { .. }
        | Op::InnerSignal { .. }
        | Op::InnerDeviceDel { .. }
        | Op::InnerDeviceAdd { .. }
        | Op::InnerSystemReset { .. }
        | Op::InnerWait { .. } => f.push(kind("BARRIER")),
    }
    let expect: Vec<&str> = s.expect.iter().map(|e| e.as_str()).collect();
    let mut head = vec![
        format!(".what = {}", c_str(&op_text(&s.op))),
        format!(".line = {}", s.line),
    ];
    if let Some(l) = &s.label {
        head.push(format!(".label = {}", c_str(l)));
    }
    head.push(format!(".expect = {}", c_str(&expect.join(" "))));
    head.push(format!(".deadline_ms = {}", s.deadline_ms()));
    f.splice(1..1, head);
    format!("\t{{ {} }},\n", f.join(", "))
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
    o.push_str(
        "static const struct step final_cleanup = { .op = OP_CLEANUP, .what = \"cleanup\", \
         .expect = \"ok\", .deadline_ms = 10000 };\n\n",
    );
    Ok(())
}

#[cfg(test)]
mod tests;
