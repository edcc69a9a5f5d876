//! Boots the real guest and round-trips the agent.

mod common;

use std::time::Duration;

use ccwrig::proto::{Op, Outcome};
use ccwrig::vm::{self, QemuCommand, Sockets};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guest_boots_and_agent_answers() {
    let bz = common::fast_kernel();
    let img = common::image();
    let dir = common::run_dir("vm_boot");
    let mut cmd = QemuCommand::new(&bz, &img.initrd, Sockets::in_dir(&dir));
    cmd.devices = vm::default_devices();
    let cpus = cmd.cpus as usize;
    let (vm, hello, took) = vm::boot(cmd, &ccwrig::rundir::RunDir::at(&dir), vm::READY_TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("boot failed ({e}); see {}", dir.display()));
    assert!(
        hello.kernel_release.starts_with("6.12"),
        "kernel release {}",
        hello.kernel_release
    );
    assert!(took < vm::READY_TIMEOUT);

    // A real operation through the agent: the two virtio-rng devices are I/O subchannels
    // 0.0.0000 and 0.0.0001 bound to io_subchannel.
    let (_, r) = vm
        .agent
        .request("test", Op::ListSubchannels, 5000)
        .await
        .expect("agent answers");
    assert_eq!(r.outcome, Outcome::Ok, "{r:?}");
    let text = r.data.to_string();
    assert!(
        text.contains("0.0.0000") && text.contains("0.0.0001"),
        "{text}"
    );
    assert!(text.contains("io_subchannel"), "{text}");

    // An errno travels back by name: removing an mdev that was never created.
    let (_, r) = vm
        .agent
        .request(
            "test",
            Op::MdevRemove {
                mdev: "nope".into(),
            },
            5000,
        )
        .await
        .expect("agent answers");
    assert!(
        matches!(r.outcome, Outcome::Failed { .. } | Outcome::Errno { .. }),
        "{r:?}"
    );

    // Heartbeats arrive (every 500 ms): the last sign of life is younger than the hello
    // answer, which also counts as one, and which came at least 1.2 s ago.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let age = vm.agent.heartbeat_age().expect("a heartbeat arrived");
    assert!(
        age < Duration::from_millis(1100),
        "last heartbeat {age:?} ago"
    );

    // Console and kmsg were captured to the run directory.
    assert!(
        vm.console.text().contains("Linux version"),
        "console.log lacks the banner"
    );
    // QEMU's own threads are readable (a guest that QEMU does not stop is judged by them):
    // one named thread per vCPU, each with frames of QEMU's own.
    use ccwrig::vm::host_threads;
    let host_threads::Captured { text, threads } = host_threads::capture(vm.pid())
        .await
        .expect("gdb reads QEMU's threads");
    let vcpus: Vec<_> = threads
        .iter()
        .filter(|t| t.name.starts_with("CPU ") && t.name.ends_with("/TCG"))
        .collect();
    assert_eq!(vcpus.len(), cpus, "{text}");
    assert!(
        vcpus
            .iter()
            .all(|t| t.frames.iter().any(|f| f.own && f.function != "??")),
        "{text}"
    );
    assert!(
        !host_threads::vcpu_summary(&threads, 4).contains(": \n"),
        "{text}"
    );
    // gdb let QEMU go on: the agent still answers.
    let (_, r) = vm
        .agent
        .request("test", Op::ListSubchannels, 5000)
        .await
        .expect("agent answers after gdb detached");
    assert_eq!(r.outcome, Outcome::Ok, "{r:?}");

    let clean = vm.shutdown(Duration::from_secs(20)).await;
    assert!(
        clean,
        "poweroff did not end QEMU cleanly; see {}",
        dir.display()
    );
    let dmesg = std::fs::read_to_string(dir.join("dmesg.txt")).unwrap_or_default();
    assert!(
        dmesg.contains("vfio_ccw") || dmesg.contains("Linux version"),
        "dmesg.txt: {dmesg:.200}"
    );
}
