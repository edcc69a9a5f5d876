//! Snapshot boots on the real guest: two VMs restored from one snapshot must not share what
//! each guest must have for itself (the kernel's random generator, hence mdev UUIDs; the wall
//! clock), and a restored VM's records must join the snapshotting boot's without a gap or a
//! repeat.

mod common;

use std::time::Duration;

use ccwrig::proto::{Op, OpResult, Outcome};
use ccwrig::rundir::RunDir;
use ccwrig::vm::snapshot::Snapshot;
use ccwrig::vm::{self, QemuCommand, Sockets, Vm};

async fn ask(vm: &Vm, op: Op) -> OpResult {
    let name = op.name();
    let (_, r) = vm
        .agent
        .request("test", op, 10_000)
        .await
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(r.outcome, Outcome::Ok, "{name}: {r:?}");
    r
}

async fn exec(vm: &Vm, argv: &[&str]) -> String {
    let r = ask(
        vm,
        Op::Exec {
            argv: argv.iter().map(|s| s.to_string()).collect(),
        },
    )
    .await;
    r.data["stdout"]
        .as_str()
        .unwrap_or_else(|| panic!("{argv:?}: no stdout in {r:?}"))
        .trim()
        .to_string()
}

/// What one restored guest drew and saw.
struct Drawn {
    kernel_uuid: String,
    mdev_uuid: String,
    session: u64,
}

/// The `seq` field of each /dev/kmsg record (`prio,seq,usec,flags;text`).
fn kmsg_seqs(lines: &[String]) -> Vec<u64> {
    lines
        .iter()
        .filter_map(|l| l.split(',').nth(1)?.parse().ok())
        .collect()
}

async fn restore_and_draw(snap: &Snapshot, cmd: &QemuCommand, name: &str) -> Drawn {
    let dir = common::run_dir(name);
    let mut cmd = cmd.clone();
    cmd.sockets = Sockets::in_dir(&dir);
    let (vm, hello, _) = snap
        .restore(cmd, &RunDir::at(&dir), vm::READY_TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("restore failed ({e}); see {}", dir.display()));

    // Drawn first: the kernel reseeds its generator by itself every max(1 s, uptime / 2)
    // (drivers/char/random.c, crng_has_old_seed), so the later a draw, the likelier two
    // restored guests differ even without the agent's reseed.
    let kernel_uuid = exec(&vm, &["cat", "/proc/sys/kernel/random/uuid"]).await;
    // The guest clock goes on from the moment the snapshot was taken: monotonic time does not
    // go back (and the snapshot's age is not added to it: that would fire every timer at once).
    assert!(
        hello.now_ms >= snap.meta.hello_now_ms,
        "guest monotonic clock went back: {} ms at restore, {} ms at the snapshot",
        hello.now_ms,
        snap.meta.hello_now_ms
    );
    // The wall clock is the host's, not the snapshot's.
    let guest_secs: u64 = exec(&vm, &["date", "+%s"])
        .await
        .parse()
        .expect("date +%s prints a number");
    let host_secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    assert!(
        guest_secs.abs_diff(host_secs) <= 5,
        "guest wall clock {guest_secs}, host {host_secs}"
    );
    // Timers run after the restore: a guest-side sleep ends, and not early.
    let slept = ask(&vm, Op::Sleep { ms: 300 }).await;
    assert!(slept.duration_us >= 300_000, "{slept:?}");

    ask(
        &vm,
        Op::Bind {
            schid: "0.0.0000".into(),
            driver: "vfio_ccw".into(),
        },
    )
    .await;
    let created = ask(
        &vm,
        Op::MdevCreate {
            parent: "0.0.0000".into(),
            mdev: "m1".into(),
            uuid: None,
        },
    )
    .await;
    let mdev_uuid = created.data["uuid"]
        .as_str()
        .unwrap_or_else(|| panic!("no uuid in {created:?}"))
        .to_string();

    // Every kernel log record once, in order, across the join of the two boots' records: a
    // mark proves the stream has delivered everything before it.
    ask(
        &vm,
        Op::Mark {
            text: format!("{name} end"),
        },
    )
    .await;
    let until = std::time::Instant::now() + Duration::from_secs(10);
    let mark = format!("ccwrig-mark: {name} end");
    while !(vm.agent.kmsg_has(0, &mark) && vm.console.has(0, &mark)) {
        assert!(std::time::Instant::now() < until, "mark never arrived");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let seqs = kmsg_seqs(&vm.agent.kmsg_lines());
    let expected: Vec<u64> = (0..seqs.len() as u64).collect();
    assert_eq!(
        seqs,
        expected,
        "kmsg records lost or repeated; see {}",
        dir.display()
    );
    let console = vm.console.text();
    for once in ["Linux version", "ccwrig-agent: ready on"] {
        assert_eq!(
            console.matches(once).count(),
            1,
            "{once:?} in {}",
            dir.display()
        );
    }
    vm.shutdown(Duration::from_secs(20)).await;
    Drawn {
        kernel_uuid,
        mdev_uuid,
        session: hello.session,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restored_guests_share_no_randomness_and_keep_their_records_whole() {
    let bz = common::fast_kernel();
    let img = common::image();
    let mut cmd = QemuCommand::new(&bz, &img.initrd, Sockets::in_dir(std::path::Path::new("/")));
    cmd.devices = vm::default_devices();
    let snap = Snapshot::find_or_take(&cmd, vm::READY_TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("snapshot: {e}"));

    let ram = |snap: &Snapshot| {
        let bytes = std::fs::read(snap.ram()).expect("the snapshot's RAM file");
        ccwrig::cache::KeyBuilder::new("ram")
            .bytes("ram", &bytes)
            .finish()
    };
    let before = ram(&snap);
    let a = restore_and_draw(&snap, &cmd, "vm_snapshot_a").await;
    let b = restore_and_draw(&snap, &cmd, "vm_snapshot_b").await;
    // Each restored guest wrote its memory (a boot id, an mdev) into its own copy.
    assert_eq!(
        ram(&snap),
        before,
        "a restored VM changed the snapshot's RAM"
    );
    assert_ne!(a.session, b.session);
    assert_ne!(
        a.kernel_uuid, b.kernel_uuid,
        "two restored guests drew the same random UUID from the kernel"
    );
    assert_ne!(
        a.mdev_uuid, b.mdev_uuid,
        "two restored guests created their mdev with the same UUID"
    );
}

#[test]
fn kmsg_sequence_numbers_are_read_from_each_record() {
    let lines = vec![
        "5,0,22882,-;Linux version 6.12.117".to_string(),
        "6,1,25563,-;setup: Linux is running under KVM in 64-bit mode\n SUBSYSTEM=cpu".to_string(),
        "garbage".to_string(),
    ];
    assert_eq!(kmsg_seqs(&lines), vec![0, 1]);
}
