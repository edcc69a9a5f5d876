//! The one place that knows QEMU's command line for ccwrig guests: machine, console, the
//! agent port, the virtio-ccw devices behind the subchannels under test, and their devnos.
//!
//! Every socket is a chardev in client mode (`server=off`): the harness listens first, QEMU
//! connects while it starts, so no console byte or QMP greeting is lost to a late connect.

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// A channel-subsystem device number as QEMU spells it: `fe.0.0002` (cssid.ssid.devno).
/// cssid 0xfe is the virtual channel subsystem QEMU maps to the guest's css 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Devno {
    pub cssid: u8,
    pub ssid: u8,
    pub devno: u16,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("bad devno {0:?}: expected cssid.ssid.devno in hex, like fe.0.0002")]
pub struct DevnoError(pub String);

impl FromStr for Devno {
    type Err = DevnoError;
    /// The scenario language's grammar of bus ids (lower-case hex, as the kernel prints).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (cssid, ssid, devno) =
            crate::scenario::ids::parse_bus_id(s).map_err(|_| DevnoError(s.to_string()))?;
        Ok(Devno { cssid, ssid, devno })
    }
}

impl Devno {
    /// The devno as the guest's sysfs lists a ccw device: `0.<ssid>.<number>` (QEMU's
    /// virtual channel subsystem `fe` is the guest's css 0).
    pub fn as_listed(&self) -> String {
        format!("0.{:x}.{:04x}", self.ssid, self.devno)
    }
}

impl fmt::Display for Devno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:x}.{:x}.{:04x}", self.cssid, self.ssid, self.devno)
    }
}

/// The kinds of virtio-ccw device a scenario can put behind a subchannel. virtio-rng is the
/// default: it has no backend state worth keeping, answers SENSE ID (control unit 0x3832),
/// and hot-unplugs cleanly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CcwDeviceKind {
    VirtioRng,
}

impl CcwDeviceKind {
    pub fn driver(self) -> &'static str {
        match self {
            CcwDeviceKind::VirtioRng => "virtio-rng-ccw",
        }
    }
}

/// A device under test: its QEMU id (used by `device_del`), kind and devno.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CcwDevice {
    pub id: String,
    pub kind: CcwDeviceKind,
    pub devno: Devno,
}

impl CcwDevice {
    pub fn virtio_rng(id: &str, devno: Devno) -> Self {
        CcwDevice {
            id: id.to_string(),
            kind: CcwDeviceKind::VirtioRng,
            devno,
        }
    }

    /// The `-device` argument.
    pub fn device_arg(&self) -> String {
        format!("{},devno={},id={}", self.kind.driver(), self.devno, self.id)
    }

    /// The same device for QMP `device_add`, so a replug recreates exactly what was booted.
    pub fn qmp_device_add(&self) -> qapi::qmp::device_add {
        let mut arguments = qapi::Dictionary::new();
        arguments.insert(
            "devno".into(),
            serde_json::Value::String(self.devno.to_string()),
        );
        qapi::qmp::device_add {
            driver: self.kind.driver().to_string(),
            id: Some(self.id.clone()),
            bus: None,
            arguments,
        }
    }
}

/// The devno of the virtio-serial device that carries the agent port. It sits after the
/// devices under test so they get the low subchannel numbers 0.0.0000, 0.0.0001, ... in order.
pub const AGENT_SERIAL_DEVNO: Devno = Devno {
    cssid: 0xfe,
    ssid: 0,
    devno: 0xa6e0,
};

/// Where each host-side socket lives; all are unix sockets the harness listens on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sockets {
    pub qmp: PathBuf,
    pub console: PathBuf,
    pub agent: PathBuf,
}

impl Sockets {
    pub fn in_dir(dir: &Path) -> Self {
        Sockets {
            qmp: dir.join("qmp"),
            console: dir.join("con"),
            agent: dir.join("agent"),
        }
    }
}

/// Guest memory of the base image. Boot time grows with it under TCG: the kernel initialises
/// and frees every page before /init (256 MiB reaches /init ~80 ms sooner than 512 MiB on
/// the 2-core CI machine), and nothing in the base image needs more: after boot and after
/// an I/O loop the guest still has 227 of its 256 MiB free.
pub const BASE_MEMORY_MIB: u32 = 256;
/// Guest memory of the nested image: its 43 MiB initramfs unpacks to ~75 MiB of rootfs, and
/// the inner QEMU adds its own guest (128 MiB by default) and its TCG buffers.
pub const NESTED_MEMORY_MIB: u32 = 512;

/// A typed builder for the guest's QEMU command line.
#[derive(Debug, Clone)]
pub struct QemuCommand {
    pub binary: PathBuf,
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub cpus: u32,
    pub memory_mib: u32,
    pub append: Vec<String>,
    pub devices: Vec<CcwDevice>,
    pub sockets: Sockets,
    /// `-action panic=pause`: keep a panicked guest for inspection instead of powering off.
    pub pause_on_panic: bool,
    /// gdbstub on this TCP port (loopback only).
    pub gdb_port: Option<u16>,
    /// `-incoming defer`: start with the machine's devices but not its guest, which a
    /// `migrate-incoming` then loads from a VM snapshot.
    pub incoming: bool,
    /// Guest RAM in a file instead of anonymous memory: a VM snapshot's RAM.
    pub ram_file: Option<RamFile>,
}

/// Guest RAM backed by a file (`memory-backend-file`). A snapshotting boot writes its RAM
/// through a shared mapping, so the file holds the guest's memory when it is stopped; a
/// restored VM maps that file privately: it reads the snapshot's pages straight from the page
/// cache and copies only those it writes. Nothing is read, copied or zeroed at restore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RamFile {
    /// UTF-8 without commas (a comma would end QEMU's option value).
    path: String,
    mode: RamFileMode,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RamFileMode {
    /// `share=on`: the guest's writes go to the file.
    Shared,
    /// `share=off,readonly=on,rom=off`: the file is opened read-only and mapped copy-on-write.
    PrivateCopy,
}

impl RamFile {
    /// `path` as guest RAM, or why QEMU could not be given it.
    pub fn new(path: &Path, mode: RamFileMode) -> Result<RamFile, String> {
        match path.to_str().filter(|p| !p.contains(',')) {
            Some(p) => Ok(RamFile {
                path: p.to_owned(),
                mode,
            }),
            None => Err(format!(
                "{}: a RAM file path must be UTF-8 without commas",
                path.display()
            )),
        }
    }

    /// The `-object` value for `size_mib` of RAM with QEMU id `id`.
    fn object_arg(&self, id: &str, size_mib: u32) -> String {
        let mode = match self.mode {
            RamFileMode::Shared => "share=on",
            RamFileMode::PrivateCopy => "share=off,readonly=on,rom=off",
        };
        format!(
            "memory-backend-file,id={id},size={size_mib}M,mem-path={},{mode}",
            self.path
        )
    }
}

/// The QEMU id of the RAM backend when RAM is a file.
const RAM_ID: &str = "ram0";

impl QemuCommand {
    pub fn new(kernel: &Path, initrd: &Path, sockets: Sockets) -> Self {
        QemuCommand {
            // CCWRIG_QEMU: a developer's own QEMU build, e.g. to test a QEMU patch.
            binary: std::env::var_os("CCWRIG_QEMU")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("qemu-system-s390x")),
            kernel: kernel.to_path_buf(),
            initrd: initrd.to_path_buf(),
            cpus: 2,
            memory_mib: BASE_MEMORY_MIB,
            // panic_on_warn stays off by default: a WARN is a finding the oracle reports while
            // the guest keeps answering; shutdown paths are judged from the FSM trace.
            // Everything the kernel prints reaches the console: crash reports are printed at
            // several levels and the console is the evidence when the agent is gone.
            // slab_nomerge keeps the driver's region caches apart, so the leak check counts
            // vfio-ccw's objects and nobody else's.
            // sysrq_always_enabled: the harness asks for blocked-task dumps when a guest hangs.
            // trace_event: the FSM and cio events are on from boot (see TRACE_EVENTS).
            append: vec![
                "console=ttysclp0".into(),
                "loglevel=8".into(),
                "slab_nomerge".into(),
                "sysrq_always_enabled".into(),
                format!("trace_event={}", ccwrig_proto::TRACE_EVENTS.join(",")),
            ],
            devices: Vec::new(),
            sockets,
            pause_on_panic: true,
            gdb_port: None,
            incoming: false,
            ram_file: None,
        }
    }

    pub fn device(mut self, d: CcwDevice) -> Self {
        self.devices.push(d);
        self
    }

    pub fn append(mut self, arg: &str) -> Self {
        self.append
            .extend(arg.split_whitespace().map(str::to_string));
        self
    }

    pub fn cpus(mut self, n: u32) -> Self {
        self.cpus = n;
        self
    }

    pub fn memory_mib(mut self, m: u32) -> Self {
        self.memory_mib = m;
        self
    }

    pub fn gdb(mut self, port: u16) -> Self {
        self.gdb_port = Some(port);
        self
    }

    pub fn find_device(&self, id: &str) -> Option<&CcwDevice> {
        self.devices.iter().find(|d| d.id == id)
    }

    pub fn args(&self) -> Vec<OsString> {
        let mut a: Vec<OsString> = Vec::new();
        let mut push = |s: &str| a.push(s.into());
        push("-machine");
        match &self.ram_file {
            Some(f) => {
                push(&format!("s390-ccw-virtio,memory-backend={RAM_ID}"));
                push("-object");
                push(&f.object_arg(RAM_ID, self.memory_mib));
            }
            None => push("s390-ccw-virtio"),
        }
        push("-cpu");
        push("max");
        push("-smp");
        push(&self.cpus.to_string());
        push("-m");
        push(&self.memory_mib.to_string());
        // Named threads (`CPU 0/TCG`): a hang in QEMU itself is read from its thread stacks
        // (`host_threads`).
        push("-name");
        push("ccwrig,debug-threads=on");
        push("-nographic");
        push("-nodefaults");
        push("-no-reboot");
        // -no-shutdown is deliberately absent: a clean poweroff should end the process.
        push("-chardev");
        push(&format!(
            "socket,id=con0,path={},server=off",
            self.sockets.console.display()
        ));
        push("-device");
        push("sclpconsole,chardev=con0");
        push("-chardev");
        push(&format!(
            "socket,id=qmp0,path={},server=off",
            self.sockets.qmp.display()
        ));
        push("-mon");
        push("chardev=qmp0,mode=control");
        if self.pause_on_panic {
            push("-action");
            push("panic=pause");
        }
        for d in &self.devices {
            push("-device");
            push(&d.device_arg());
        }
        // max_ports=2: port 0 is reserved for a console and port 1 is the agent's. The
        // default of 31 ports makes the guest set up 64 virtqueues through channel I/O at
        // boot (~2 % of the guest's instructions before /init, measured with -icount).
        push("-device");
        push(&format!(
            "virtio-serial-ccw,devno={},id=agentser,max_ports=2",
            AGENT_SERIAL_DEVNO
        ));
        push("-chardev");
        push(&format!(
            "socket,id=agent0,path={},server=off",
            self.sockets.agent.display()
        ));
        push("-device");
        push(&format!(
            "virtserialport,chardev=agent0,name={}",
            ccwrig_proto::AGENT_PORT_NAME
        ));
        if let Some(port) = self.gdb_port {
            push("-gdb");
            push(&format!("tcp:127.0.0.1:{port}"));
        }
        if self.incoming {
            push("-incoming");
            push("defer");
        }
        push("-kernel");
        a.push(self.kernel.clone().into_os_string());
        a.push("-initrd".into());
        a.push(self.initrd.clone().into_os_string());
        a.push("-append".into());
        a.push(self.append.join(" ").into());
        a
    }

    /// The machine's shape: every argument except where its sockets are, whether it waits
    /// for an incoming snapshot and where its RAM is (a snapshot's file or anonymous memory).
    /// Two commands with the same shape (and the same kernel and image contents) start the
    /// same machine, whose saved state fits either.
    pub fn shape_args(&self) -> Vec<OsString> {
        let mut c = self.clone();
        c.sockets = Sockets::in_dir(Path::new("/ccwrig-sockets"));
        c.incoming = false;
        c.ram_file = None;
        c.args()
    }

    /// The command as one shell-quotable line, for logs and "run this yourself" hints.
    pub fn display(&self) -> String {
        std::iter::once(self.binary.as_os_str().to_os_string())
            .chain(self.args())
            .map(|s| {
                let s = s.to_string_lossy().into_owned();
                if s.chars().any(|c| c.is_whitespace() || c == '"') {
                    format!("'{s}'")
                } else {
                    s
                }
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd() -> QemuCommand {
        QemuCommand::new(
            Path::new("/k/bzImage"),
            Path::new("/i/initrd"),
            Sockets::in_dir(Path::new("/t")),
        )
        .device(CcwDevice::virtio_rng("rng0", "fe.0.0002".parse().unwrap()))
        .device(CcwDevice::virtio_rng("rng1", "fe.0.0003".parse().unwrap()))
    }

    fn args(c: &QemuCommand) -> Vec<String> {
        c.args()
            .into_iter()
            .map(|s| s.into_string().unwrap())
            .collect()
    }

    /// The value following `flag` each time it occurs.
    fn values<'a>(a: &'a [String], flag: &str) -> Vec<&'a str> {
        a.windows(2)
            .filter(|w| w[0] == flag)
            .map(|w| w[1].as_str())
            .collect()
    }

    #[test]
    fn devnos_parse_and_print() {
        let d: Devno = "fe.0.0002".parse().unwrap();
        assert_eq!(
            d,
            Devno {
                cssid: 0xfe,
                ssid: 0,
                devno: 2
            }
        );
        assert_eq!(d.to_string(), "fe.0.0002");
        assert_eq!(d.as_listed(), "0.0.0002");
        for bad in [
            // Upper case: the scenario checker always refused it; the two now share a grammar.
            "FE.0.0002",
            "fe.0.00AB",
            "fe.0.2",
            "fe.0",
            "fe.0.0002.1",
            "zz.0.0002",
            "fe.4.0002",
            "",
        ] {
            assert!(bad.parse::<Devno>().is_err(), "{bad} should not parse");
        }
    }

    #[test]
    fn devices_under_test_precede_the_agent_port() {
        let a = args(&cmd());
        let devs = values(&a, "-device");
        assert_eq!(devs[0], "sclpconsole,chardev=con0");
        assert_eq!(devs[1], "virtio-rng-ccw,devno=fe.0.0002,id=rng0");
        assert_eq!(devs[2], "virtio-rng-ccw,devno=fe.0.0003,id=rng1");
        assert_eq!(
            devs[3],
            "virtio-serial-ccw,devno=fe.0.a6e0,id=agentser,max_ports=2"
        );
        assert_eq!(
            devs[4],
            format!(
                "virtserialport,chardev=agent0,name={}",
                ccwrig_proto::AGENT_PORT_NAME
            )
        );
    }

    #[test]
    fn sockets_are_client_chardevs() {
        let a = args(&cmd());
        let chardevs = values(&a, "-chardev");
        assert_eq!(chardevs.len(), 3);
        for c in chardevs {
            assert!(c.ends_with("server=off"), "{c}");
        }
        assert!(a.contains(&"socket,id=qmp0,path=/t/qmp,server=off".to_string()));
        assert_eq!(values(&a, "-mon"), vec!["chardev=qmp0,mode=control"]);
    }

    #[test]
    fn machine_kernel_and_append() {
        let c = cmd()
            .append("slub_debug=P  ccwrig.shell=1")
            .cpus(1)
            .memory_mib(256);
        let a = args(&c);
        assert_eq!(values(&a, "-machine"), vec!["s390-ccw-virtio"]);
        assert_eq!(values(&a, "-smp"), vec!["1"]);
        assert_eq!(values(&a, "-m"), vec!["256"]);
        assert_eq!(values(&a, "-kernel"), vec!["/k/bzImage"]);
        assert_eq!(values(&a, "-initrd"), vec!["/i/initrd"]);
        let append = values(&a, "-append")[0];
        assert!(append.starts_with("console=ttysclp0"));
        assert!(append.ends_with("slub_debug=P ccwrig.shell=1"));
        assert_eq!(values(&a, "-action"), vec!["panic=pause"]);
        assert!(a.contains(&"-nodefaults".to_string()));
        assert!(!a.contains(&"-no-shutdown".to_string()));
    }

    #[test]
    fn incoming_defers_and_leaves_the_shape_alone() {
        let mut c = cmd();
        assert!(!args(&c).contains(&"-incoming".to_string()));
        let shape = c.shape_args();
        c.incoming = true;
        assert_eq!(values(&args(&c), "-incoming"), vec!["defer"]);
        c.sockets = Sockets::in_dir(Path::new("/elsewhere"));
        assert_eq!(
            c.shape_args(),
            shape,
            "sockets and -incoming are not the shape"
        );
        assert_ne!(c.clone().memory_mib(512).shape_args(), shape);
    }

    #[test]
    fn a_ram_file_backs_the_machine_and_is_not_the_shape() {
        let mut c = cmd();
        let shape = c.shape_args();
        c.ram_file = Some(RamFile::new(Path::new("/s/ram"), RamFileMode::Shared).expect("path"));
        let a = args(&c);
        assert_eq!(
            values(&a, "-machine"),
            vec!["s390-ccw-virtio,memory-backend=ram0"]
        );
        assert_eq!(
            values(&a, "-object"),
            vec!["memory-backend-file,id=ram0,size=256M,mem-path=/s/ram,share=on"]
        );
        c.ram_file = Some(RamFile::new(Path::new("/s/ram"), RamFileMode::PrivateCopy).expect("p"));
        assert_eq!(
            values(&args(&c), "-object"),
            vec!["memory-backend-file,id=ram0,size=256M,mem-path=/s/ram,share=off,readonly=on,rom=off"]
        );
        assert_eq!(c.shape_args(), shape, "where the RAM is is not the shape");
        let err = RamFile::new(Path::new("/a,b/ram"), RamFileMode::Shared).unwrap_err();
        assert!(err.contains("/a,b/ram") && err.contains("commas"), "{err}");
    }

    #[test]
    fn gdb_listens_on_loopback_only() {
        let a = args(&cmd().gdb(1234));
        assert_eq!(values(&a, "-gdb"), vec!["tcp:127.0.0.1:1234"]);
    }

    #[test]
    fn replug_uses_the_booted_devno() {
        let c = cmd();
        let d = c.find_device("rng1").unwrap().qmp_device_add();
        assert_eq!(d.driver, "virtio-rng-ccw");
        assert_eq!(d.id.as_deref(), Some("rng1"));
        assert_eq!(
            d.arguments.get("devno"),
            Some(&serde_json::json!("fe.0.0003"))
        );
        let v = serde_json::to_value(&d).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"driver": "virtio-rng-ccw", "id": "rng1", "devno": "fe.0.0003"})
        );
    }

    #[test]
    fn display_quotes_the_append_line() {
        let s = cmd().display();
        assert!(s.starts_with("qemu-system-s390x -machine s390-ccw-virtio"));
        assert!(
            s.contains("-append 'console=ttysclp0 loglevel=8 slab_nomerge sysrq_always_enabled trace_event=vfio_ccw:*,s390:s390_cio_ssch,"),
            "{s}"
        );
    }
}
