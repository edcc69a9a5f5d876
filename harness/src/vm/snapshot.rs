//! Snapshot boots: a machine shape boots once, is stopped right after its agent's hello, and
//! its whole state is saved; every later VM of that shape starts from the saved state instead
//! of booting.
//!
//! The state is QEMU's migration stream written to a file (`migrate` to a `file:` URI on the
//! stopped machine) and read back by a QEMU started with the same arguments and
//! `-incoming defer` (`migrate-incoming`, then `cont`). The guest's RAM is not in the stream:
//! the snapshotting boot's RAM is a shared file mapping (`x-ignore-shared` leaves it out),
//! which every restored VM maps copy-on-write (`QemuCommand::ram_file`). Measured on QEMU 10.0.2 against the
//! other ways (docs/DESIGN.md, 'Snapshot boots'): `mapped-ram` restores no faster for a
//! 256 MiB guest and leaves a sparse file of the guest's full size; `savevm`/`-loadvm` needs a
//! writable qcow2 per VM (an internal snapshot is not found through an overlay or a read-only
//! image) and restored 80 ms slower.
//!
//! A snapshot is content-addressed in the cache (`snapshots/<key>`): the key covers the
//! bzImage and initramfs contents, the machine's QEMU arguments (all but its socket paths)
//! and the QEMU version, so any change of input takes a new snapshot, and machine shapes
//! never share one. With it is kept the boot it was taken in (`boot/`): its console, kernel
//! log, trace and agent log are the beginning of every restored VM's.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::qemu_args::{RamFile, RamFileMode};
use super::{boot, QemuCommand, StreamPreface, Vm, VmError};
use crate::agent::{Hello, Preface};
use crate::cache::KeyBuilder;
use crate::rundir::{Artifact, RunDir};

/// What the key's layout and the snapshot's contents mean; bumped when either changes.
const FORMAT: &str = "device state as a migration stream to a file, RAM in a file of its own \
    (x-ignore-shared), taken stopped after the agent's hello once the boot's logs drained";
const VMSTATE: &str = "vmstate";
/// The guest's RAM as it was when the state was saved (`QemuCommand::ram_file`).
const RAM: &str = "ram";
const META: &str = "meta.json";
const BOOT: &str = "boot";
/// How long saving or loading the state may take (a 256 MiB guest takes well under a second).
const MIGRATION_LIMIT: Duration = Duration::from_secs(120);

/// How a VM starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum BootMode {
    /// `snapshot` for every profile ccwrig builds (restored VMs gave the verdicts cold ones
    /// give on fast, debug and kasan, with or without KCOV: docs/DESIGN.md, 'Snapshot boots'),
    /// `cold` for a kernel ccwrig did not build (nothing is known of its config).
    #[default]
    Auto,
    /// Boot the kernel from its first instruction.
    Cold,
    /// Restore the machine shape's snapshot (taken by a cold boot the first time).
    Snapshot,
}

impl BootMode {
    /// The mode a VM of a kernel of `profile` starts in.
    pub fn resolve(self, profile: Option<crate::kernel::Profile>) -> BootMode {
        match (self, profile) {
            (BootMode::Auto, Some(_)) => BootMode::Snapshot,
            (BootMode::Auto, None) => BootMode::Cold,
            (m, _) => m,
        }
    }
}

/// The cache key of the snapshot of the machine `cmd` starts, on the QEMU that says
/// `qemu_version`.
pub fn key(cmd: &QemuCommand, qemu_version: &str) -> std::io::Result<String> {
    let mut k = KeyBuilder::new("vm-snapshot");
    k.str("format", FORMAT);
    k.file("bzImage", &cmd.kernel)?;
    k.file("initrd", &cmd.initrd)?;
    for a in cmd.shape_args() {
        k.bytes("arg", a.as_bytes());
    }
    k.str("qemu", qemu_version);
    Ok(k.finish())
}

/// The first line of `qemu --version` (with the distribution's build suffix, which changes
/// with every rebuild of the package).
pub fn qemu_version(binary: &Path) -> Result<String, VmError> {
    let out = std::process::Command::new(binary)
        .arg("--version")
        .output()
        .map_err(|e| VmError::Snapshot {
            dir: binary.to_path_buf(),
            what: format!("cannot run {} --version: {e}", binary.display()),
        })?;
    let text = String::from_utf8_lossy(&out.stdout);
    match text.lines().next() {
        Some(l) if out.status.success() && !l.trim().is_empty() => Ok(l.trim().to_string()),
        _ => Err(VmError::Snapshot {
            dir: binary.to_path_buf(),
            what: format!(
                "{} --version said nothing ({})",
                binary.display(),
                out.status
            ),
        }),
    }
}

/// What is kept beside the state: the key's inputs in words, and the boot it came from.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Meta {
    pub key: String,
    pub qemu_version: String,
    /// The machine's shape as a command line (socket paths are placeholders).
    pub shape: String,
    pub boot_to_ready_ms: u64,
    /// Guest CLOCK_MONOTONIC at the snapshotting boot's handshake: a restored guest's clock
    /// goes on from here.
    pub hello_now_ms: u64,
    pub save_ms: u64,
    pub vmstate_bytes: u64,
}

/// A snapshot in the cache.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub dir: PathBuf,
    pub meta: Meta,
}

/// How a VM was started, as `boot.json` in its run directory records it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BootRecord {
    pub mode: BootMode,
    /// QEMU start to the agent's answer to this VM's handshake.
    pub ready_ms: u64,
    /// Guest CLOCK_MONOTONIC at this VM's handshake.
    pub guest_now_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<RestoredFrom>,
}

/// Where a restored VM's records join: everything before these counts came from the boot the
/// snapshot was taken in (`<dir>/boot`), everything after from this VM.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RestoredFrom {
    pub key: String,
    pub dir: PathBuf,
    pub console_bytes: usize,
    pub dmesg_lines: usize,
    pub trace_lines: usize,
    /// Guest CLOCK_MONOTONIC at the snapshotting boot's handshake.
    pub taken_at_guest_ms: u64,
}

impl Snapshot {
    /// The snapshot of `cmd`'s machine, taken now by a cold boot if the cache has none
    /// (`ready` bounds that boot). Concurrent callers for one shape take it once.
    pub async fn find_or_take(cmd: &QemuCommand, ready: Duration) -> Result<Snapshot, VmError> {
        let version = qemu_version(&cmd.binary)?;
        let key = key(cmd, &version).map_err(|e| VmError::Snapshot {
            dir: cmd.kernel.clone(),
            what: format!("hashing the kernel and image: {e}"),
        })?;
        let root = crate::cache::dir("snapshots")?;
        let dir = root.join(&key[..16]);
        if let Some(s) = Snapshot::load(&dir, &key) {
            return Ok(s);
        }
        let lock_path = root.join(format!("{}.lock", &key[..16]));
        let _lock = tokio::task::spawn_blocking(move || lock(&lock_path))
            .await
            .map_err(|e| VmError::Snapshot {
                dir: dir.clone(),
                what: format!("lock task: {e}"),
            })??;
        // Another process may have taken it while this one waited for the lock.
        if let Some(s) = Snapshot::load(&dir, &key) {
            return Ok(s);
        }
        take(cmd, &key, &version, &dir, ready).await
    }

    fn load(dir: &Path, key: &str) -> Option<Snapshot> {
        let meta: Meta = serde_json::from_slice(&std::fs::read(dir.join(META)).ok()?).ok()?;
        let whole = dir.join(VMSTATE).is_file() && dir.join(RAM).is_file();
        (meta.key == key && whole).then(|| Snapshot {
            dir: dir.to_path_buf(),
            meta,
        })
    }

    /// The guest RAM file every restored VM maps copy-on-write.
    pub fn ram(&self) -> PathBuf {
        self.dir.join(RAM)
    }

    /// The snapshotting boot's records up to the moment the state was saved.
    pub fn preface(&self) -> Result<StreamPreface, VmError> {
        let boot = RunDir::at(self.dir.join(BOOT));
        let read = |a: Artifact| {
            std::fs::read(boot.path(a)).map_err(|e| VmError::Snapshot {
                dir: self.dir.clone(),
                what: format!("{}: {e}", boot.path(a).display()),
            })
        };
        let lines = |b: Vec<u8>| -> Vec<String> {
            String::from_utf8_lossy(&b)
                .lines()
                .map(str::to_string)
                .collect()
        };
        // The agent starts its kernel log and trace streams after its hello: a snapshot taken
        // before their first line has neither file, and the restored agent sends them whole.
        let optional = |a: Artifact| match boot.has(a) {
            true => read(a).map(lines),
            false => Ok(vec![]),
        };
        Ok(StreamPreface {
            console: read(Artifact::Console)?,
            agent: Preface {
                kmsg: optional(Artifact::Dmesg)?,
                trace: optional(Artifact::Trace)?,
                log: String::from_utf8_lossy(&read(Artifact::AgentLog)?).into_owned(),
            },
        })
    }

    /// Starts a VM of this snapshot's machine from it: `cmd` must be the command the snapshot
    /// was found for (its sockets may differ). Returns as [`super::boot`] does, the time
    /// being QEMU start to the agent's answer.
    pub async fn restore(
        &self,
        mut cmd: QemuCommand,
        dir: &RunDir,
        ready: Duration,
    ) -> Result<(Vm, Hello, Duration), VmError> {
        cmd.incoming = true;
        cmd.ram_file = Some(ram_file(&self.dir.join(RAM), RamFileMode::PrivateCopy)?);
        let preface = self.preface()?;
        let from = RestoredFrom {
            key: self.meta.key.clone(),
            dir: self.dir.clone(),
            console_bytes: preface.console.len(),
            dmesg_lines: preface.agent.kmsg.len(),
            trace_lines: preface.agent.trace.len(),
            taken_at_guest_ms: self.meta.hello_now_ms,
        };
        let mut vm = Vm::launch_with(cmd, dir, preface).await?;
        ignore_shared_ram(&vm).await?;
        let uri = file_uri(&self.dir.join(VMSTATE))?;
        vm.qmp
            .execute(&qapi::qmp::migrate_incoming {
                uri: Some(uri),
                channels: None,
                exit_on_error: None,
            })
            .await?;
        wait_migration(&vm, &self.dir).await?;
        vm.qmp.execute(&qapi::qmp::cont {}).await?;
        let (hello, took) = vm.wait_ready(ready).await?;
        write_record(
            dir,
            &BootRecord {
                mode: BootMode::Snapshot,
                ready_ms: took.as_millis() as u64,
                guest_now_ms: hello.now_ms,
                snapshot: Some(from),
            },
        );
        Ok((vm, hello, took))
    }
}

/// Starts a VM of `cmd`'s machine as `mode` says, waiting at most `ready` for its agent
/// (a snapshot taken on the way gets the same bound for its own boot).
pub async fn start(
    mode: BootMode,
    cmd: QemuCommand,
    dir: &RunDir,
    ready: Duration,
) -> Result<(Vm, Hello, Duration), VmError> {
    match mode {
        // A caller that did not resolve the mode gets the boot that needs no evidence.
        BootMode::Cold | BootMode::Auto => {
            let mode = BootMode::Cold;
            let (vm, hello, took) = boot(cmd, dir, ready).await?;
            write_record(
                dir,
                &BootRecord {
                    mode,
                    ready_ms: took.as_millis() as u64,
                    guest_now_ms: hello.now_ms,
                    snapshot: None,
                },
            );
            Ok((vm, hello, took))
        }
        BootMode::Snapshot => {
            let snap = Snapshot::find_or_take(&cmd, ready).await?;
            snap.restore(cmd, dir, ready).await
        }
    }
}

fn write_record(dir: &RunDir, r: &BootRecord) {
    // A failed write is recorded in the run directory's lost evidence and fails the run.
    dir.write_json(Artifact::Boot, r);
}

/// Boots `cmd` cold in a scratch directory, saves the stopped machine's state there after the
/// agent's hello, and moves the whole into `dir` once complete.
async fn take(
    cmd: &QemuCommand,
    key: &str,
    version: &str,
    dir: &Path,
    ready: Duration,
) -> Result<Snapshot, VmError> {
    let scratch = dir.with_extension("partial");
    let fail = |what: String| VmError::Snapshot {
        dir: scratch.clone(),
        what,
    };
    if scratch.exists() {
        std::fs::remove_dir_all(&scratch)
            .map_err(|e| fail(format!("removing a failed attempt: {e}")))?;
    }
    let boot_dir = RunDir::create(scratch.join(BOOT)).map_err(|e| fail(e.to_string()))?;
    tracing::info!("taking a VM snapshot in {}", scratch.display());
    let mut booting = cmd.clone();
    booting.ram_file = Some(ram_file(&scratch.join(RAM), RamFileMode::Shared)?);
    let (mut vm, hello, took) = boot(booting, &boot_dir, ready).await?;
    drain_boot_logs(&vm, ready).await;
    let t0 = Instant::now();
    let vmstate = scratch.join(VMSTATE);
    vm.qmp.execute(&qapi::qmp::stop {}).await?;
    // The RAM stays in its file (a shared mapping: the file is the guest's memory); only the
    // devices' state goes into the stream.
    ignore_shared_ram(&vm).await?;
    vm.qmp
        .execute(&qapi::qmp::migrate {
            uri: Some(file_uri(&vmstate)?),
            channels: None,
            detach: None,
            resume: None,
        })
        .await?;
    wait_migration(&vm, &scratch).await?;
    let save_ms = t0.elapsed().as_millis() as u64;
    // QEMU may close the connection before its answer to quit: the exit is what counts.
    let _ = vm.qmp.execute(&qapi::qmp::quit {}).await;
    if !vm.wait_exit(Duration::from_secs(10)).await {
        return Err(fail("QEMU did not exit after quit".into()));
    }
    // Every byte the guest sent before it was stopped is in the boot's records once QEMU has
    // closed both streams.
    let limit = Duration::from_secs(5);
    if !(vm.console.wait_closed(limit).await && vm.agent.wait_closed(limit).await) {
        return Err(fail(
            "console or agent stream still open after QEMU exited".into(),
        ));
    }
    if !boot_dir.lost().is_empty() {
        return Err(fail(format!("boot records lost: {:?}", boot_dir.lost())));
    }
    let meta = Meta {
        key: key.to_string(),
        qemu_version: version.to_string(),
        shape: {
            let mut c = cmd.clone();
            c.sockets = super::Sockets::in_dir(Path::new("/ccwrig-sockets"));
            c.display()
        },
        boot_to_ready_ms: took.as_millis() as u64,
        hello_now_ms: hello.now_ms,
        save_ms,
        vmstate_bytes: std::fs::metadata(&vmstate)
            .map_err(|e| fail(format!("{}: {e}", vmstate.display())))?
            .len(),
    };
    let text = serde_json::to_string_pretty(&meta).map_err(|e| fail(e.to_string()))?;
    std::fs::write(scratch.join(META), text + "\n")
        .map_err(|e| fail(format!("writing {META}: {e}")))?;
    std::fs::rename(&scratch, dir)
        .map_err(|e| fail(format!("moving to {}: {e}", dir.display())))?;
    tracing::info!(
        "VM snapshot {} taken: boot {} ms, save {} ms, {} bytes",
        dir.display(),
        meta.boot_to_ready_ms,
        meta.save_ms,
        meta.vmstate_bytes
    );
    Ok(Snapshot {
        dir: dir.to_path_buf(),
        meta,
    })
}

/// Waits until the agent has relayed the kernel log and trace of the boot (a mark written to
/// both has arrived), at most `limit`. The agent starts both streams after its hello; a
/// snapshot taken before they drained makes every restored guest send the whole boot log
/// before it answers the handshake. A mark that does not arrive leaves a slower snapshot,
/// not a wrong one.
async fn drain_boot_logs(vm: &Vm, limit: Duration) {
    let text = "vm snapshot";
    let mark = vm.agent.request(
        "harness",
        ccwrig_proto::Op::Mark { text: text.into() },
        limit.as_millis() as u64,
    );
    let written = match mark.await {
        Ok((_, r)) if r.outcome == ccwrig_proto::Outcome::Ok => {
            serde_json::from_value::<ccwrig_proto::data::MarkWritten>(r.data).unwrap_or_default()
        }
        other => {
            tracing::warn!("VM snapshot: no mark before saving ({other:?})");
            return;
        }
    };
    let needle = format!("{}{text}", ccwrig_proto::MARK_PREFIX);
    let until = Instant::now() + limit;
    while (written.kmsg && !(vm.agent.kmsg_has(0, &needle) && vm.console.has(0, &needle)))
        || (written.trace && !vm.agent.trace_has(0, &needle))
    {
        if Instant::now() > until {
            tracing::warn!("VM snapshot: the boot's logs did not drain within {limit:?}");
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// `file:<path>`; QEMU reads options after a comma in the URI, so a path with one is refused.
fn ram_file(path: &Path, mode: RamFileMode) -> Result<RamFile, VmError> {
    RamFile::new(path, mode).map_err(|what| VmError::Snapshot {
        dir: path.to_path_buf(),
        what,
    })
}

/// `x-ignore-shared`: RAM in a shared, named file is not migrated. Set on both ends: the
/// saving QEMU leaves the RAM out of the stream, the loading one reads the stream's block
/// list in that layout and keeps the RAM its file mapping gives it.
async fn ignore_shared_ram(vm: &Vm) -> Result<(), VmError> {
    use qapi::qmp::{migrate_set_capabilities, MigrationCapability, MigrationCapabilityStatus};
    vm.qmp
        .execute(&migrate_set_capabilities {
            capabilities: vec![MigrationCapabilityStatus {
                capability: MigrationCapability::x_ignore_shared,
                state: true,
            }],
        })
        .await?;
    Ok(())
}

fn file_uri(path: &Path) -> Result<String, VmError> {
    let s = path.to_str().filter(|s| !s.contains(','));
    s.map(|s| format!("file:{s}"))
        .ok_or_else(|| VmError::Snapshot {
            dir: path.to_path_buf(),
            what: "the cache path must be UTF-8 without commas (a QEMU file: URI)".into(),
        })
}

/// `query-migrate` decoded only as far as needed: qapi's typed `MigrationInfo` is QEMU 9.1's
/// and must not fail on a field a later QEMU changed.
#[derive(Serialize)]
struct QueryMigrate {}

#[derive(Deserialize)]
struct MigrationState {
    #[serde(default)]
    status: Option<String>,
    #[serde(rename = "error-desc", default)]
    error_desc: Option<String>,
}

impl qapi::Command for QueryMigrate {
    const NAME: &'static str = "query-migrate";
    const ALLOW_OOB: bool = false;
    type Ok = MigrationState;
}

/// Polls until the migration (outgoing or incoming) completed.
async fn wait_migration(vm: &Vm, dir: &Path) -> Result<(), VmError> {
    let until = Instant::now() + MIGRATION_LIMIT;
    loop {
        let s = vm.qmp.execute(&QueryMigrate {}).await?;
        match s.status.as_deref() {
            Some("completed") => return Ok(()),
            Some("failed") | Some("cancelled") => {
                return Err(VmError::Snapshot {
                    dir: dir.to_path_buf(),
                    what: format!(
                        "migration failed: {} (see qemu.log)",
                        s.error_desc.unwrap_or_default()
                    ),
                })
            }
            _ if Instant::now() > until => {
                return Err(VmError::Snapshot {
                    dir: dir.to_path_buf(),
                    what: format!("migration not done after {} s", MIGRATION_LIMIT.as_secs()),
                })
            }
            _ => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    }
}

/// An exclusive lock on `path`, held until dropped (the kernel drops it if the process dies).
fn lock(path: &Path) -> Result<std::fs::File, VmError> {
    let err = |e: std::io::Error| VmError::Snapshot {
        dir: path.to_path_buf(),
        what: format!("lock: {e}"),
    };
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(err)?;
    rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive)
        .map_err(|e| err(e.into()))?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_restores_the_profiles_shown_faithful_and_boots_foreign_kernels_cold() {
        use crate::kernel::Profile;
        assert_eq!(
            BootMode::Auto.resolve(Some(Profile::Fast)),
            BootMode::Snapshot
        );
        assert_eq!(
            BootMode::Auto.resolve(Some(Profile::Debug)),
            BootMode::Snapshot
        );
        assert_eq!(BootMode::Auto.resolve(None), BootMode::Cold);
        assert_eq!(BootMode::Cold.resolve(Some(Profile::Fast)), BootMode::Cold);
        assert_eq!(
            BootMode::Snapshot.resolve(Some(Profile::Debug)),
            BootMode::Snapshot
        );
    }
    use crate::vm::{CcwDevice, Sockets};

    fn files(dir: &Path) -> (PathBuf, PathBuf) {
        let (k, i) = (dir.join("bzImage"), dir.join("initrd"));
        std::fs::write(&k, b"kernel 1").expect("write");
        std::fs::write(&i, b"image 1").expect("write");
        (k, i)
    }

    fn cmd(k: &Path, i: &Path, sockets: &str) -> QemuCommand {
        QemuCommand::new(k, i, Sockets::in_dir(Path::new(sockets))).device(CcwDevice::virtio_rng(
            "rng0",
            "fe.0.0002".parse().expect("devno"),
        ))
    }

    /// Every input of a snapshot changes its key; where the sockets are and whether QEMU waits
    /// for an incoming state do not.
    #[test]
    fn the_key_follows_every_input_and_nothing_else() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (k, i) = files(tmp.path());
        let v = "QEMU emulator version 10.0.2 (Debian 1:10.0.2+ds-2+deb13u1~bpo12+1)";
        let base = key(&cmd(&k, &i, "/a"), v).expect("key");

        let mut same = cmd(&k, &i, "/elsewhere");
        same.incoming = true;
        assert_eq!(key(&same, v).expect("key"), base);

        let mut changed = vec![
            (
                "qemu version",
                key(&cmd(&k, &i, "/a"), "QEMU emulator version 10.1.0").expect("key"),
            ),
            (
                "memory",
                key(&cmd(&k, &i, "/a").memory_mib(512), v).expect("key"),
            ),
            (
                "append",
                key(&cmd(&k, &i, "/a").append("quiet"), v).expect("key"),
            ),
            (
                "device",
                key(
                    &cmd(&k, &i, "/a").device(CcwDevice::virtio_rng(
                        "rng1",
                        "fe.0.0003".parse().expect("devno"),
                    )),
                    v,
                )
                .expect("key"),
            ),
        ];
        std::fs::write(&k, b"kernel 2").expect("write");
        changed.push(("bzImage contents", key(&cmd(&k, &i, "/a"), v).expect("key")));
        std::fs::write(&k, b"kernel 1").expect("write");
        std::fs::write(&i, b"image 2").expect("write");
        changed.push(("initrd contents", key(&cmd(&k, &i, "/a"), v).expect("key")));
        std::fs::write(&i, b"image 1").expect("write");
        assert_eq!(
            key(&cmd(&k, &i, "/a"), v).expect("key"),
            base,
            "inputs restored"
        );
        for (what, other) in &changed {
            assert_ne!(other, &base, "a new {what} must take a new snapshot");
        }
        let mut all: Vec<&String> = changed.iter().map(|(_, k)| k).collect();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), changed.len(), "each change gives its own key");
    }

    #[test]
    fn a_missing_kernel_is_an_error_naming_it() {
        let c = cmd(Path::new("/nonexistent/bzImage"), Path::new("/x"), "/a");
        assert!(key(&c, "v").is_err());
    }

    #[test]
    fn file_uris_refuse_commas() {
        assert_eq!(
            file_uri(Path::new("/c/snapshots/ab/vmstate")).expect("uri"),
            "file:/c/snapshots/ab/vmstate"
        );
        assert!(file_uri(Path::new("/c/a,b/vmstate")).is_err());
    }

    #[test]
    fn boot_modes_spell_as_the_cli_does() {
        use clap::ValueEnum;
        let names: Vec<String> = BootMode::value_variants()
            .iter()
            .filter_map(|m| m.to_possible_value().map(|p| p.get_name().to_string()))
            .collect();
        assert_eq!(names, vec!["auto", "cold", "snapshot"]);
    }
}
