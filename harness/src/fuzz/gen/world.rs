//! The generator's model of the guest, per actor: what is bound, which mdevs and handles it
//! believes exist, and fresh names for new ones.

/// What the issuing actor believes about one mdev.
#[derive(Debug, Clone)]
pub(super) struct MdevModel {
    pub(super) name: String,
    pub(super) parent: usize,
    pub(super) alive: bool,
}

#[derive(Debug, Clone)]
pub(super) struct HandleModel {
    pub(super) name: String,
    pub(super) open: bool,
    /// Whether this actor opened it (and so must close it in its tail).
    pub(super) mine: bool,
    /// Opened through the iommufd cdev (so `ioas` applies).
    pub(super) iommufd: bool,
}

/// The generator's view of the guest, per actor. Other actors' effects are not modelled:
/// they race, and a race's outcome is not known in advance.
#[derive(Debug, Clone)]
pub(super) struct World {
    /// Subchannel index -> bound to vfio_ccw.
    pub(super) bound: Vec<bool>,
    pub(super) mdevs: Vec<MdevModel>,
    pub(super) handles: Vec<HandleModel>,
    /// Handles this actor holds an `io_stall` on: released before its tail closes them, so a
    /// held request never outlives the program and leaves a remove blocked behind it.
    pub(super) stalled: Vec<String>,
}

impl World {
    pub(super) fn new(n: usize) -> World {
        World {
            bound: vec![false; n],
            mdevs: vec![],
            handles: vec![],
            stalled: vec![],
        }
    }

    pub(super) fn live_mdevs(&self) -> Vec<&MdevModel> {
        self.mdevs.iter().filter(|m| m.alive).collect()
    }

    pub(super) fn open_handles(&self) -> Vec<&HandleModel> {
        self.handles.iter().filter(|h| h.open).collect()
    }

    /// A subchannel leaves vfio_ccw: its mdevs go with it (once their users close).
    pub(super) fn unbound(&mut self, i: usize) {
        self.bound[i] = false;
        self.mdevs
            .iter_mut()
            .filter(|m| m.parent == i)
            .for_each(|m| m.alive = false);
    }

    pub(super) fn set_handle(&mut self, name: &str, open: bool) {
        if let Some(h) = self.handles.iter_mut().find(|h| h.name == name) {
            h.open = open;
        }
    }
}

/// Fresh names for mdevs and handles, unique within one program.
#[derive(Debug, Default)]
pub(super) struct Names {
    mdevs: usize,
    handles: usize,
}

impl Names {
    pub(super) fn mdev(&mut self) -> String {
        self.mdevs += 1;
        format!("m{}", self.mdevs - 1)
    }
    pub(super) fn handle(&mut self) -> String {
        self.handles += 1;
        format!("h{}", self.handles - 1)
    }
}
