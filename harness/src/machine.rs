//! One guest machine, typed: which image it boots, how much memory it gets, which devices sit
//! behind which subchannels — and every per-device fact (QEMU id, devno, subchannel id, the
//! bus id the guest lists) derived from a device's place in one spot. The runner, the fuzzer,
//! `ccwrig run/soak/compare` and the tests all start guests from a [`MachineSpec`].

use std::path::Path;

use crate::scenario;
use crate::vm::{self, CcwDevice, Devno, QemuCommand, Sockets};

/// A device under test and where it sits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    /// Position on the machine: the i-th device becomes subchannel `0.0.000<i>`.
    pub index: usize,
    /// QEMU's device id (`device_del` / `device_add` name it).
    pub id: String,
    pub devno: Devno,
}

impl Slot {
    /// The subchannel id the s390-ccw-virtio machine gives the i-th virtio-ccw device.
    pub fn schid(&self) -> String {
        scenario::Machine::schid_of(self.index)
    }

    /// The ccw device's bus id as the guest lists it (`0.0.0002` for `fe.0.0002`).
    pub fn bus_id(&self) -> String {
        self.devno.as_listed()
    }

    pub fn qemu_device(&self) -> CcwDevice {
        CcwDevice::virtio_rng(&self.id, self.devno)
    }
}

/// The image a machine boots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageKind {
    /// The agent and busybox.
    Base,
    /// Also Debian's s390x QEMU, for `inner_*` operations.
    Nested,
}

#[derive(Debug, thiserror::Error)]
#[error("device {id}: {source}")]
pub struct MachineError {
    pub id: String,
    pub source: vm::qemu_args::DevnoError,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineSpec {
    pub image: ImageKind,
    pub memory_mib: u32,
    pub devices: Vec<Slot>,
    /// Kernel command line on top of the harness's own.
    pub append: String,
}

impl MachineSpec {
    /// The machine a scenario asks for.
    pub fn of(m: &scenario::Machine) -> Result<MachineSpec, MachineError> {
        let devices = m
            .devices
            .iter()
            .enumerate()
            .map(|(index, d)| {
                Ok(Slot {
                    index,
                    id: d.id.clone(),
                    devno: d.devno.parse().map_err(|source| MachineError {
                        id: d.id.clone(),
                        source,
                    })?,
                })
            })
            .collect::<Result<Vec<_>, MachineError>>()?;
        let image = if m.nested {
            ImageKind::Nested
        } else {
            ImageKind::Base
        };
        Ok(MachineSpec {
            image,
            memory_mib: match image {
                ImageKind::Base => vm::BASE_MEMORY_MIB,
                ImageKind::Nested => vm::NESTED_MEMORY_MIB,
            },
            devices,
            append: m.append.clone(),
        })
    }

    /// The image this machine boots, built or found in the cache.
    pub fn image(&self) -> Result<crate::image::Image, crate::image::ImageError> {
        crate::image::build_for(self.image == ImageKind::Nested)
    }

    /// QEMU's command line for this machine booting `bzimage` with `initrd`; `append` is the
    /// caller's extra kernel command line.
    pub fn qemu_command(
        &self,
        bzimage: &Path,
        initrd: &Path,
        sockets: Sockets,
        append: &str,
    ) -> QemuCommand {
        let mut cmd = QemuCommand::new(bzimage, initrd, sockets)
            .append(&self.append)
            .append(append)
            .memory_mib(self.memory_mib);
        for d in &self.devices {
            cmd = cmd.device(d.qemu_device());
        }
        cmd
    }

    pub fn slot(&self, id: &str) -> Option<&Slot> {
        self.devices.iter().find(|d| d.id == id)
    }

    /// The bus ids of every ccw device QEMU starts for this machine: the devices under test
    /// and the agent's virtio-serial port.
    pub fn bus_ids(&self) -> Vec<String> {
        self.devices
            .iter()
            .map(Slot::bus_id)
            .chain(std::iter::once(
                vm::qemu_args::AGENT_SERIAL_DEVNO.as_listed(),
            ))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn machine(text: &str) -> Result<MachineSpec, MachineError> {
        let sc = crate::scenario::parse_str(
            &format!(
                "description = \"t\"\n{text}\n[actors.a]\nsteps = [{{ op = \"list_subchannels\" }}]\n"
            ),
            "t",
            None,
        )
        .expect("valid scenario");
        MachineSpec::of(&sc.machine)
    }

    #[test]
    fn every_device_fact_comes_from_its_place() {
        let m = machine(
            "[machine]\ndevices = [{ id = \"rng0\", devno = \"fe.0.0002\" }, { id = \"rng1\", devno = \"fe.0.00ab\" }]",
        )
        .expect("machine");
        let s = m.slot("rng1").expect("rng1");
        assert_eq!(s.schid(), "0.0.0001");
        assert_eq!(s.bus_id(), "0.0.00ab");
        assert_eq!(s.qemu_device().devno.to_string(), "fe.0.00ab");
        assert_eq!(m.image, ImageKind::Base);
        let cmd = m.qemu_command(
            Path::new("/k"),
            Path::new("/i"),
            Sockets::in_dir(Path::new("/s")),
            "quiet",
        );
        assert_eq!(cmd.memory_mib, vm::BASE_MEMORY_MIB);
        assert_eq!(cmd.devices.len(), 2);
        assert!(cmd.append.iter().any(|a| a == "quiet"));
    }

    #[test]
    fn nested_machines_get_the_nested_image_and_room_for_the_inner_guest() {
        let m = machine(
            "[machine]\nnested = true\ndevices = [{ id = \"rng0\", devno = \"fe.0.0002\" }]",
        )
        .expect("machine");
        assert_eq!(m.image, ImageKind::Nested);
        assert_eq!(m.memory_mib, vm::NESTED_MEMORY_MIB);
        const { assert!(vm::NESTED_MEMORY_MIB > vm::BASE_MEMORY_MIB) };
    }
}
