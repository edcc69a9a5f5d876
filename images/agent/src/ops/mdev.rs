//! Mediated devices of type vfio_ccw-io: create, remove, available_instances.

use std::sync::Arc;

use serde_json::{json, Value};

use super::{OpError, OpRes};
use crate::paths;
use crate::state::{lock, Agent, Mdev};
use crate::sys;

fn type_dir(parent: &str) -> String {
    format!(
        "{}/mdev_supported_types/vfio_ccw-io",
        paths::subchannel(parent)
    )
}

pub fn create(agent: &Arc<Agent>, parent: &str, name: &str, uuid: Option<&str>) -> OpRes {
    if parent.contains('/') {
        return Err(OpError::failed(format!("bad parent {parent:?}")));
    }
    let uuid = match uuid {
        Some(u) => u.to_string(),
        None => uuid_v4()?,
    };
    let data = json!({"mdev": name, "uuid": uuid, "parent": parent});
    // Remember the name before writing: if the write blocks past the deadline, later steps can
    // still refer to it, and cleanup knows about it.
    lock(&agent.mdevs).insert(
        name.to_string(),
        Mdev {
            uuid: uuid.clone(),
            parent: parent.to_string(),
        },
    );
    agent.touch(parent);
    sys::write_attr(&format!("{}/create", type_dir(parent)), &uuid)
        .map_err(|e| OpError::from(e).with_data(data.clone()))?;
    Ok(data)
}

pub fn remove(agent: &Arc<Agent>, name: &str) -> OpRes {
    let m = agent
        .mdev(name)
        .ok_or_else(|| OpError::failed(format!("unknown mdev {name:?}")))?;
    let data = json!({"mdev": name, "uuid": m.uuid});
    sys::write_attr(&format!("{}/remove", paths::mdev(&m.uuid)), "1")
        .map_err(|e| OpError::from(e).with_data(data.clone()))?;
    Ok(data)
}

pub fn available_instances(parent: &str) -> OpRes {
    let p = format!("{}/available_instances", type_dir(parent));
    let s =
        std::fs::read_to_string(&p).map_err(|e| sys::SysError::from_io(format!("read {p}"), &e))?;
    let n: Value = s
        .trim()
        .parse::<u64>()
        .map(Value::from)
        .unwrap_or_else(|_| Value::from(s.trim()));
    Ok(json!({"parent": parent, "available_instances": n}))
}

/// A random (version 4) UUID from the kernel's random pool.
fn uuid_v4() -> Result<String, OpError> {
    let mut b = [0u8; 16];
    sys::random_bytes(&mut b)?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: Vec<String> = b.iter().map(|x| format!("{x:02x}")).collect();
    Ok(format!(
        "{}-{}-{}-{}-{}",
        h[0..4].concat(),
        h[4..6].concat(),
        h[6..8].concat(),
        h[8..10].concat(),
        h[10..16].concat()
    ))
}
