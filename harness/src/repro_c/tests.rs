use super::*;
use crate::scenario::{parse_file, parse_str};

fn scenarios() -> Vec<Scenario> {
    crate::scenario::load_dir(&crate::suite::scenarios_dir()).expect("the scenario library parses")
}

fn seeded() -> ExportOptions {
    ExportOptions {
        seed: Some(1692444545977850787),
        ..Default::default()
    }
}

fn seed_scenario() -> Scenario {
    parse_file(&crate::suite::scenarios_dir().join("unplug_request_reset.toml")).unwrap()
}

/// The table row of an actor's step, as the generated C spells it.
fn row<'a>(c: &'a str, what: &str) -> &'a str {
    let key = format!(".what = {}", c_str(what));
    c.lines()
        .find(|l| l.contains(&key))
        .unwrap_or_else(|| panic!("no step {what:?} in:\n{c}"))
}

#[test]
fn the_seed_scenario_becomes_tables_of_the_agents_operations() {
    let c = export(&seed_scenario(), &seeded()).unwrap();
    let consumer = row(&c, "consumer handle=d on_request=reset");
    assert!(
        consumer.contains(".on_request = ON_REQUEST_RESET"),
        "{consumer}"
    );
    let reset = row(&c, "reset handle=d");
    assert!(reset.contains(".expect = \"EINVAL ENODEV ok\""), "{reset}");
    assert!(reset.contains(".label = \"reset after unplug\""), "{reset}");
    assert!(reset.contains(".line = 37"), "{reset}");
    let del = row(&c, "device_del device=rng0");
    assert!(del.contains(".op = OP_HOST") && del.contains(".host_op = \"device_del\""));
    assert!(c.contains("{ .name = \"unplug\", .count = 2 }"));
    assert!(c.contains("#define SEED 1692444545977850787ULL"));
    assert!(
        c.contains("\t{ \"device_del\", NULL },"),
        "no command: a pause"
    );
    // Every op the runtime dispatches on is defined once, and main comes last.
    assert_eq!(c.matches("int main(int argc, char **argv)").count(), 1);
    assert!(c.find("static const struct step actor_user[]") < c.find("int main("));
}

/// The recorded run of this scenario drew 1 ms before the step after the barrier
/// (tests/data/symbolize/6.12-seed-notoper-open-run/steps.jsonl, `"jitter_ms":1`); the C
/// table must carry the same delays as the runner's own function.
#[test]
fn jitter_rows_are_the_runners_draws() {
    let sc = seed_scenario();
    let c = export(&sc, &seeded()).unwrap();
    assert!(c.contains("static const unsigned int jitter_user[] = {\n\t0, 0, 0, 1, 0, 0,\n};"));

    let mut sc = sc;
    sc.race.repeat = 3;
    sc.race.jitter_ms = (0, 50);
    let c = export(&sc, &seeded()).unwrap();
    let user = &sc.actors[0];
    let body = c
        .split("static const unsigned int jitter_user[] = {\n")
        .nth(1)
        .unwrap();
    for rep in 0..3u32 {
        let line = body.lines().nth(rep as usize).unwrap();
        let got: Vec<u64> = line
            .trim()
            .trim_end_matches(',')
            .split(", ")
            .map(|x| x.parse().unwrap())
            .collect();
        // only the step right after the barrier (index 3) is delayed
        let want: Vec<u64> = (0..user.steps.len())
            .map(|i| {
                if i == 3 {
                    crate::run::jitter(1692444545977850787, rep, "user", 3, (0, 50))
                } else {
                    0
                }
            })
            .collect();
        assert_eq!(got, want, "rep {rep}");
    }
}

#[test]
fn a_built_in_host_command_is_a_c_string() {
    let mut o = seeded();
    o.host_cmds
        .insert("device_del".into(), "vmcp det 0002 \"x\" \\ ??=".into());
    let c = export(&seed_scenario(), &o).unwrap();
    assert!(
        c.contains(r#"{ "device_del", "vmcp det 0002 \"x\" \\ \?\?=" },"#),
        "{}",
        c.lines().find(|l| l.contains("vmcp")).unwrap_or("")
    );
    o.host_cmds.insert("unplug".into(), "x".into());
    let e = export(&seed_scenario(), &o).unwrap_err().to_string();
    assert!(
        e.contains("--host-cmd unplug") && e.contains("device_del"),
        "{e}"
    );
}

#[test]
fn a_jittered_scenario_without_a_seed_is_refused_and_one_without_jitter_needs_none() {
    let e = export(&seed_scenario(), &ExportOptions::default()).unwrap_err();
    assert!(matches!(e, ExportError::NoSeed { .. }), "{e}");
    let sc = parse_str(
        "description = \"d\"\n[machine]\ndevices = [{ id = \"rng0\", devno = \"fe.0.0002\" }]\n[actors.a]\nsteps = [{ op = \"list_subchannels\" }]\n",
        "plain",
        None,
    )
    .unwrap();
    assert!(export(&sc, &ExportOptions::default()).is_ok());
}

/// Over the whole scenario library: every scenario either exports, or fails naming one of
/// its own steps whose op has no C form. Nothing is silently dropped: each op step of an
/// exported scenario has its row.
#[test]
fn every_library_scenario_exports_or_names_the_op_it_cannot_express() {
    let mut exported = 0;
    for sc in scenarios() {
        match export(&sc, &seeded()) {
            Ok(c) => {
                exported += 1;
                for (_, _, st) in all_steps(&sc) {
                    if let Some(op) = st.op() {
                        row(&c, &op_text(op));
                    }
                }
            }
            Err(ExportError::Unsupported { op, line, .. }) => {
                let culprit = all_steps(&sc)
                    .filter_map(|(_, _, s)| match s {
                        Step::Op(o) => Some(o),
                        _ => None,
                    })
                    .find(|o| o.line == line)
                    .unwrap_or_else(|| panic!("{}: no step at line {line}", sc.name));
                assert_eq!(culprit.op.name(), op, "{}", sc.name);
                assert!(unsupported(&culprit.op).is_some());
            }
            Err(e) => panic!("{}: {e}", sc.name),
        }
    }
    assert!(exported >= 15, "only {exported} scenarios exported");
}

/// Every exportable library scenario compiles without a warning into a static s390x
/// binary, with the flags the generated header tells maintainers to use (plus -Werror).
/// A source that compiled so before, with the same compiler, comes from the cache: a warm
/// rerun costs a hash per scenario, a clean clone compiles them all.
#[test]
fn exported_scenarios_cross_compile_statically_without_warnings() {
    if !build::available(build::CROSS_CC) {
        eprintln!(
            "skipped: no {} (run `sudo ci/install-deps.sh`)",
            build::CROSS_CC
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cache = crate::cache::dir("repro-c").unwrap_or_else(|e| panic!("{e}"));
    let mut built = 0;
    for sc in scenarios() {
        let Ok(c) = export(&sc, &seeded()) else {
            continue;
        };
        let src = dir.path().join(format!("{}.c", sc.name));
        let bin = dir.path().join(&sc.name);
        std::fs::write(&src, c).unwrap();
        build::compile_cached(build::CROSS_CC, &src, &bin, &cache)
            .unwrap_or_else(|e| panic!("{e}"));
        let elf = std::fs::read(&bin).unwrap();
        // ELF, 64-bit, big-endian, EM_S390 (22), no program interpreter (static).
        assert_eq!(&elf[..6], b"\x7fELF\x02\x02", "{}", sc.name);
        assert_eq!(u16::from_be_bytes([elf[18], elf[19]]), 22, "{}", sc.name);
        assert!(
            !elf.windows(14).any(|w| w == b"/lib/ld64.so.1"),
            "{} is dynamically linked",
            sc.name
        );
        built += 1;
    }
    assert!(built >= 15, "only {built} built");
}

/// The uapi facts the C declares itself are the kernel's: checked by compiling against the
/// pinned 6.12 tree's own include/uapi headers.
#[test]
fn c_abi_matches_the_kernels_uapi_headers() {
    let req = crate::kernel::BuildRequest::new(crate::kernel::Profile::Fast);
    let Some(k) = crate::kernel::cached(&req).ok().flatten() else {
        eprintln!("skipped: no cached pinned kernel (its source has the uapi headers)");
        return;
    };
    let uapi = k.src.join("include/uapi");
    if !uapi.join("linux/iommufd.h").is_file() || !build::available("gcc") {
        eprintln!("skipped: no {} or no gcc", uapi.display());
        return;
    }
    // Only the three headers come from the kernel tree (unprocessed uapi headers cannot be
    // used from user space as a whole); linux/types.h and the rest are the system's.
    let dir = tempfile::tempdir().unwrap();
    let inc = dir.path().join("include");
    std::fs::create_dir_all(inc.join("linux")).unwrap();
    for h in ["vfio.h", "vfio_ccw.h", "iommufd.h", "userfaultfd.h"] {
        std::fs::copy(uapi.join("linux").join(h), inc.join("linux").join(h)).unwrap();
    }
    let uapi = inc;
    let check = dir.path().join("uapi_check.c");
    std::fs::write(&check, abi::uapi_check_source()).unwrap();
    let o = std::process::Command::new("gcc")
        .args(["-fsyntax-only", "-Wall", "-Werror", "-I"])
        .arg(&uapi)
        .arg(&check)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // The check can fail: a wrong value is caught.
    let wrong = abi::uapi_check_source().replace("== 0x3b6f", "== 0x3b70");
    std::fs::write(&check, wrong).unwrap();
    let o = std::process::Command::new("gcc")
        .args(["-fsyntax-only", "-I"])
        .arg(&uapi)
        .arg(&check)
        .output()
        .unwrap();
    assert!(!o.status.success(), "a wrong VFIO_DEVICE_RESET compiled");
}

#[test]
fn c_strings_escape_what_c_would_misread() {
    assert_eq!(c_str("a\"b\\c\nd"), r#""a\"b\\c\nd""#);
    assert_eq!(c_str("??="), r#""\?\?=""#);
    assert_eq!(c_str("é"), r#""\303\251""#);
    assert_eq!(comment_text("a */ b"), "a * / b");
}
