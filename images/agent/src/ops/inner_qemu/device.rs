//! The inner machine's vfio-ccw device: one description serves the `-device` argument of
//! `start` and the arguments of QMP's `device_add`, so a replugged device is the one started.

use serde_json::{json, Map, Value};

/// The id of the vfio-ccw device in the inner machine (device_del/device_add refer to it).
pub(super) const DEVICE_ID: &str = "hostdev0";
/// QEMU's name of the device type.
const DRIVER: &str = "vfio-ccw";

/// The mdev the inner QEMU holds, and the device number the inner machine sees it at.
pub(super) struct VfioCcw<'a> {
    pub(super) uuid: &'a str,
    pub(super) devno: &'a str,
}

impl VfioCcw<'_> {
    /// The device's properties, in command-line order.
    fn properties(&self) -> [(&'static str, String); 3] {
        [
            ("sysfsdev", crate::paths::mdev(self.uuid)),
            ("devno", self.devno.to_owned()),
            ("id", DEVICE_ID.to_owned()),
        ]
    }

    /// The `-device` argument: `vfio-ccw,sysfsdev=...,devno=...,id=hostdev0`.
    pub(super) fn arg(&self) -> String {
        let mut s = DRIVER.to_owned();
        for (k, v) in self.properties() {
            s.push_str(&format!(",{k}={v}"));
        }
        s
    }

    /// The arguments of QMP's `device_add` for the same device.
    pub(super) fn qmp_args(&self) -> Value {
        let mut m = Map::new();
        m.insert("driver".into(), json!(DRIVER));
        for (k, v) in self.properties() {
            m.insert(k.into(), json!(v));
        }
        Value::Object(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_and_device_add_describe_one_device() {
        let d = VfioCcw {
            uuid: "7e270a25-e163-4922-af60-757fc8ed48c6",
            devno: "fe.0.1234",
        };
        assert_eq!(
            d.arg(),
            "vfio-ccw,sysfsdev=/sys/bus/mdev/devices/7e270a25-e163-4922-af60-757fc8ed48c6,\
             devno=fe.0.1234,id=hostdev0"
        );
        assert_eq!(
            d.qmp_args(),
            json!({
                "driver": "vfio-ccw",
                "sysfsdev": "/sys/bus/mdev/devices/7e270a25-e163-4922-af60-757fc8ed48c6",
                "devno": "fe.0.1234",
                "id": "hostdev0",
            })
        );
    }
}
