//! What the agent remembers between requests: mdev names, open handles, touched subchannels,
//! inner QEMUs.
//! Every map is behind its own mutex, held only for lookups and inserts — never across a
//! system call that can block.

pub mod handle;
pub mod inner_qemu;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::AtomicU32;
use std::sync::{Arc, Mutex};

pub use crate::sys::lock;
pub use handle::{Handle, HandleMap};
pub use inner_qemu::{InnerQemu, InnerQemuMap};

use crate::out::Outbox;

#[derive(Debug, Clone)]
pub struct Mdev {
    pub uuid: String,
    pub parent: String,
}

pub struct Agent {
    pub out: Outbox,
    pub mdevs: Mutex<BTreeMap<String, Mdev>>,
    pub handles: HandleMap,
    /// Subchannels whose binding the agent changed: `cleanup` gives them back to io_subchannel.
    pub touched: Mutex<BTreeSet<String>>,
    /// Subchannels whose ccw device the program set offline (`online`), and channel paths it
    /// varied off (`chp`): `cleanup` brings both back.
    pub offline: Mutex<BTreeSet<String>>,
    pub varied_off: Mutex<BTreeSet<String>>,
    /// Inner QEMUs by name (nested image); `cleanup` kills and forgets them.
    pub inner_qemus: InnerQemuMap,
    /// Operations still running (for heartbeats).
    pub running: AtomicU32,
    /// KCOV descriptors for operations the host asked coverage of.
    pub kcov: crate::kcov::Pool,
}

impl Agent {
    pub fn new(out: Outbox) -> Arc<Agent> {
        Arc::new(Agent {
            out,
            mdevs: Mutex::new(BTreeMap::new()),
            handles: Mutex::new(Default::default()),
            touched: Mutex::new(BTreeSet::new()),
            offline: Mutex::new(BTreeSet::new()),
            varied_off: Mutex::new(BTreeSet::new()),
            inner_qemus: Mutex::new(BTreeMap::new()),
            running: AtomicU32::new(0),
            kcov: Default::default(),
        })
    }

    pub fn handle(&self, name: &str) -> Option<Arc<Handle>> {
        lock(&self.handles).get(name).cloned()
    }

    pub fn mdev(&self, name: &str) -> Option<Mdev> {
        lock(&self.mdevs).get(name).cloned()
    }

    pub fn inner_qemu(&self, name: &str) -> Option<Arc<InnerQemu>> {
        lock(&self.inner_qemus).get(name).cloned()
    }

    pub fn touch(&self, schid: &str) {
        lock(&self.touched).insert(schid.to_string());
    }
}
