//! What the values of a scenario must mean together, checked on the model so that generated
//! scenarios get the same checks as written ones. Problems name a field path; the parser turns
//! that into a file position.

use std::collections::{BTreeMap, BTreeSet};

use ccwrig_proto::{ChpAction, Op, Side};

use super::ids;
use super::model::*;
use super::reader::{child, index};

/// One problem: the field path it is about and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    pub path: String,
    pub message: String,
}

fn issue(path: impl Into<String>, message: impl Into<String>) -> Issue {
    Issue {
        path: path.into(),
        message: message.into(),
    }
}

/// All phases of a phased file run in one VM: each must describe the same machine as the
/// first.
pub fn same_machine(first: &Machine, this: &Machine) -> Result<(), Issue> {
    if first == this {
        return Ok(());
    }
    Err(issue(
        "machine",
        "every phase runs in the same VM: its [phase.machine] must be the first phase's",
    ))
}

/// The first problem found, in document order as far as possible.
pub fn validate(s: &Scenario) -> Result<(), Issue> {
    if s.description.trim().is_empty() {
        return Err(issue(
            "description",
            "the description is empty: say what this exercises and why",
        ));
    }
    check_machine(&s.machine)?;
    check_actor_names(s)?;
    let ctx = Ctx::new(s);
    for (i, step) in s.setup.iter().enumerate() {
        ctx.check_step(step, &index("setup", i), Place::Setup(i))?;
    }
    for (a, actor) in s.actors.iter().enumerate() {
        let path = child(&child("actors", &actor.name), "steps");
        for (i, step) in actor.steps.iter().enumerate() {
            ctx.check_step(step, &index(&path, i), Place::Actor(a, i))?;
        }
    }
    for (i, step) in s.teardown.iter().enumerate() {
        ctx.check_step(step, &index("teardown", i), Place::Teardown)?;
    }
    check_barriers(&s.actors)?;
    if s.race.repeat == 0 {
        return Err(issue(
            "race.repeat",
            "repeat = 0 would run nothing; use at least 1",
        ));
    }
    if s.race.jitter_ms.0 > s.race.jitter_ms.1 {
        return Err(issue("race.jitter_ms", "lower bound is above upper bound"));
    }
    for schid in s.expect.fsm_final.keys() {
        ctx.check_schid(schid, &child("expect.fsm_final", schid))?;
    }
    Ok(())
}

fn check_machine(m: &Machine) -> Result<(), Issue> {
    if m.devices.is_empty() {
        return Err(issue(
            "machine.devices",
            "no devices: vfio-ccw needs at least one subchannel",
        ));
    }
    let mut ids_seen = BTreeSet::new();
    let mut devnos_seen = BTreeSet::new();
    for (i, d) in m.devices.iter().enumerate() {
        let path = index("machine.devices", i);
        ids::check_name("device", &d.id).map_err(|m| issue(child(&path, "id"), m))?;
        ids::check_devno(&d.devno).map_err(|m| issue(child(&path, "devno"), m))?;
        if !ids_seen.insert(&d.id) {
            return Err(issue(
                child(&path, "id"),
                format!("device id {:?} is used twice", d.id),
            ));
        }
        if !devnos_seen.insert(&d.devno) {
            return Err(issue(
                child(&path, "devno"),
                format!("devno {:?} is used twice", d.devno),
            ));
        }
    }
    Ok(())
}

fn check_actor_names(s: &Scenario) -> Result<(), Issue> {
    if s.actors.is_empty() {
        return Err(issue(
            "actors",
            "no actors: a scenario needs at least one [actors.<name>]",
        ));
    }
    for a in &s.actors {
        let path = child("actors", &a.name);
        ids::check_name("actor", &a.name).map_err(|m| issue(&path, m))?;
        if a.name == SETUP_ACTOR {
            return Err(issue(&path, "\"setup\" is the implicit actor of [[setup]] and [[teardown]]; choose another name"));
        }
        if a.steps.is_empty() {
            return Err(issue(&path, format!("actor {:?} has no steps", a.name)));
        }
    }
    Ok(())
}

/// Where a step runs, for deciding which handles and mdevs exist by then.
#[derive(Clone, Copy)]
enum Place {
    Setup(usize),
    Actor(usize, usize),
    Teardown,
}

/// Who makes each handle and mdev, and where.
struct Ctx<'s> {
    s: &'s Scenario,
    /// name -> places that open it / create it
    handles: BTreeMap<&'s str, Vec<Place>>,
    mdevs: BTreeMap<&'s str, Vec<Place>>,
}

impl<'s> Ctx<'s> {
    fn new(s: &'s Scenario) -> Self {
        let mut ctx = Ctx {
            s,
            handles: BTreeMap::new(),
            mdevs: BTreeMap::new(),
        };
        let mut note = |op: &'s Op, place: Place| match op {
            Op::Open { handle, .. } => ctx.handles.entry(handle.as_str()).or_default().push(place),
            Op::MdevCreate { mdev, .. } => ctx.mdevs.entry(mdev.as_str()).or_default().push(place),
            _ => {}
        };
        for (i, st) in s.setup.iter().enumerate() {
            st.op().into_iter().for_each(|op| note(op, Place::Setup(i)));
        }
        for (a, actor) in s.actors.iter().enumerate() {
            for (i, st) in actor.steps.iter().enumerate() {
                st.op()
                    .into_iter()
                    .for_each(|op| note(op, Place::Actor(a, i)));
            }
        }
        for st in &s.teardown {
            st.op().into_iter().for_each(|op| note(op, Place::Teardown));
        }
        ctx
    }

    fn check_step(&self, step: &Step, path: &str, place: Place) -> Result<(), Issue> {
        let st = match step {
            Step::Barrier { .. } => {
                return match place {
                    Place::Actor(..) => Ok(()),
                    _ => Err(issue(
                        path,
                        "barriers belong to actors: setup and teardown run alone",
                    )),
                }
            }
            Step::Op(st) => st,
        };
        if let Some((lo, hi)) = st.jitter_ms {
            if lo > hi {
                return Err(issue(
                    child(path, "jitter_ms"),
                    "lower bound is above upper bound",
                ));
            }
            // The runner jitters only the step right after a barrier; anywhere else the
            // setting would be silently ignored.
            let after_barrier = match place {
                Place::Actor(a, i) => {
                    i > 0 && matches!(self.s.actors[a].steps[i - 1], Step::Barrier { .. })
                }
                _ => false,
            };
            if !after_barrier {
                return Err(issue(
                    child(path, "jitter_ms"),
                    "jitter_ms only applies to a step right after a barrier; use a sleep step here",
                ));
            }
        }
        if st.expect.is_empty() {
            return Err(issue(
                child(path, "expect"),
                "an empty expect list accepts nothing; use \"any\"",
            ));
        }
        let op = &st.op;
        self.check_side(op, path, place)?;
        if let Some(h) = op.handle() {
            let p = child(path, "handle");
            ids::check_name("handle", h).map_err(|m| issue(&p, m))?;
            if !matches!(op, Op::Open { .. }) && !made_before(self.handles.get(h), place) {
                return Err(issue(p, format!("handle {h:?} is not opened before this step (no `open` step with handle = {h:?} in setup, another actor, or earlier here)")));
            }
        }
        if let Some(m) = op.mdev() {
            let p = child(path, "mdev");
            ids::check_name("mdev", m).map_err(|msg| issue(&p, msg))?;
            if !matches!(op, Op::MdevCreate { .. }) && !made_before(self.mdevs.get(m), place) {
                return Err(issue(p, format!("mdev {m:?} is not created before this step (no `mdev_create` step with mdev = {m:?} in setup, another actor, or earlier here)")));
            }
        }
        self.check_op_values(op, path)
    }

    fn check_side(&self, op: &Op, path: &str, place: Place) -> Result<(), Issue> {
        let Place::Actor(a, _) = place else {
            // Setup and teardown run one step at a time, so either side may act there.
            return Ok(());
        };
        let actor = &self.s.actors[a];
        let p = child(path, "op");
        match (actor.is_host(), op.side()) {
            (true, Side::Guest) if !matches!(op, Op::Sleep { .. }) => Err(issue(
                p,
                format!(
                    "the host actor can only use host-side operations ({}) and sleep, not {:?}",
                    ccwrig_proto::Op::HOST_OPS.join(", "),
                    op.name()
                ),
            )),
            (false, Side::Host) => Err(issue(
                p,
                format!(
                    "{:?} is a host-side (QMP) operation: put it in [actors.host]",
                    op.name()
                ),
            )),
            _ => Ok(()),
        }
    }

    fn check_op_values(&self, op: &Op, path: &str) -> Result<(), Issue> {
        match op {
            Op::Bind { schid, driver } => {
                self.check_schid(schid, &child(path, "schid"))?;
                if driver != ccwrig_proto::DRIVER_VFIO_CCW
                    && driver != ccwrig_proto::DRIVER_IO_SUBCHANNEL
                {
                    return Err(issue(
                        child(path, "driver"),
                        format!(
                            "unknown driver {driver:?}, expected \"vfio_ccw\" or \"io_subchannel\""
                        ),
                    ));
                }
            }
            Op::Unbind { schid } => self.check_schid(schid, &child(path, "schid"))?,
            Op::MdevCreate { parent, uuid, .. } => {
                self.check_schid(parent, &child(path, "parent"))?;
                if let Some(u) = uuid {
                    ids::check_uuid(u).map_err(|m| issue(child(path, "uuid"), m))?;
                }
            }
            Op::AvailableInstances { parent } => {
                self.check_schid(parent, &child(path, "parent"))?
            }
            Op::DeviceDel { device } | Op::DeviceAdd { device }
                if !self.s.machine.devices.iter().any(|d| &d.id == device) =>
            {
                let known: Vec<&str> = self
                    .s
                    .machine
                    .devices
                    .iter()
                    .map(|d| d.id.as_str())
                    .collect();
                return Err(issue(
                    child(path, "device"),
                    format!(
                        "unknown device {device:?}: [machine].devices has {}",
                        super::reader::one_of(&known)
                    ),
                ));
            }
            Op::Io { count, .. } if *count == 0 => {
                return Err(issue(child(path, "count"), "count = 0 runs no I/O"));
            }
            Op::Io {
                program: Some(p), ..
            } => {
                if let Some(why) = p.problem() {
                    return Err(issue(child(path, "program"), why));
                }
            }
            Op::Close { order, .. } => {
                let distinct: BTreeSet<_> = order.iter().map(|p| format!("{p:?}")).collect();
                if order.is_empty() || distinct.len() != order.len() {
                    return Err(issue(
                        child(path, "order"),
                        "list each of device, group, container at most once, at least one",
                    ));
                }
            }
            Op::Exec { argv } if argv.is_empty() => {
                return Err(issue(child(path, "argv"), "argv is empty"));
            }
            Op::Online { schid, .. } => self.check_schid(schid, &child(path, "schid"))?,
            Op::Chp {
                action: ChpAction::VaryOff,
                hold_ms: None,
                ..
            } => {
                return Err(issue(
                    child(path, "hold_ms"),
                    "vary_off needs hold_ms: every device of the guest, the agent's own port \
                     included, is on the path, so the step varies it on again after hold_ms",
                ));
            }
            Op::RegionAccess { threads, count, .. } if *threads == 0 || *count == 0 => {
                return Err(issue(
                    child(path, if *threads == 0 { "threads" } else { "count" }),
                    "must be at least 1",
                ));
            }
            Op::RegionAccess { threads, .. } if *threads > MAX_ACCESS_THREADS => {
                return Err(issue(
                    child(path, "threads"),
                    format!("at most {MAX_ACCESS_THREADS}"),
                ));
            }
            _ => {}
        }
        Ok(())
    }

    fn check_schid(&self, schid: &str, path: &str) -> Result<(), Issue> {
        ids::check_schid(schid).map_err(|m| issue(path, m))?;
        let known = self.s.machine.schids();
        if !known.iter().any(|k| k == schid) {
            return Err(issue(
                path,
                format!(
                    "subchannel {schid:?} does not exist: the {} device(s) in [machine].devices are {}",
                    known.len(),
                    super::reader::one_of(&known.iter().map(String::as_str).collect::<Vec<_>>())
                ),
            ));
        }
        Ok(())
    }
}

/// Whether something made at one of `makers` exists when `place` runs. Other actors count
/// whenever they make it: racing for it is what scenarios are for.
/// The C reproducer runs at most this many threads for one `region_access`.
const MAX_ACCESS_THREADS: u32 = 16;

fn made_before(makers: Option<&Vec<Place>>, place: Place) -> bool {
    makers.is_some_and(|ms| {
        ms.iter().any(|m| match (*m, place) {
            (Place::Setup(j), Place::Setup(i)) => j < i,
            (Place::Setup(_), _) => true,
            (Place::Actor(b, j), Place::Actor(a, i)) => a != b || j < i,
            (Place::Actor(..), Place::Teardown) => true,
            (Place::Teardown, _) | (Place::Actor(..), Place::Setup(_)) => false,
        })
    })
}

/// Barriers: every barrier is met by at least two actors the same number of times, and the
/// actors can all get through them (no two actors meet them in different orders).
fn check_barriers(actors: &[Actor]) -> Result<(), Issue> {
    // (actor index, step index, name) of every barrier step
    let mut seqs: Vec<Vec<(usize, &str)>> = Vec::new();
    for a in actors {
        seqs.push(
            a.steps
                .iter()
                .enumerate()
                .filter_map(|(i, s)| match s {
                    Step::Barrier { name, .. } => Some((i, name.as_str())),
                    _ => None,
                })
                .collect(),
        );
    }
    let step_path =
        |a: usize, i: usize| index(&child(&child("actors", &actors[a].name), "steps"), i);

    let mut counts: BTreeMap<&str, BTreeMap<usize, usize>> = BTreeMap::new();
    for (a, seq) in seqs.iter().enumerate() {
        for (_, name) in seq {
            *counts.entry(name).or_default().entry(a).or_default() += 1;
        }
    }
    for (a, seq) in seqs.iter().enumerate() {
        for (i, name) in seq {
            let per_actor = &counts[name];
            if per_actor.len() < 2 {
                return Err(issue(
                    step_path(a, *i),
                    format!("barrier {name:?} is listed only by actor {:?}: it needs at least two actors to meet", actors[a].name),
                ));
            }
            let mine = per_actor[&a];
            if let Some((b, n)) = per_actor.iter().find(|(_, n)| **n != mine) {
                return Err(issue(
                    step_path(a, *i),
                    format!(
                        "barrier {name:?} is listed {mine} time(s) by actor {:?} but {n} time(s) by actor {:?}",
                        actors[a].name, actors[*b].name
                    ),
                ));
            }
        }
    }

    // Walk everyone forward: a barrier opens when every actor that lists it is waiting there.
    let mut pos = vec![0usize; actors.len()];
    loop {
        let waiting: Vec<(usize, &str)> = (0..actors.len())
            .filter_map(|a| seqs[a].get(pos[a]).map(|(_, n)| (a, *n)))
            .collect();
        if waiting.is_empty() {
            return Ok(());
        }
        let open = waiting.iter().find(|(_, name)| {
            counts[name]
                .keys()
                .all(|b| seqs[*b].get(pos[*b]).is_some_and(|(_, n)| n == name))
        });
        match open {
            Some((_, name)) => {
                let name = *name;
                for b in counts[name].keys() {
                    pos[*b] += 1;
                }
            }
            None => {
                let (a, name) = waiting[0];
                let (b, other) = counts[name]
                    .keys()
                    .filter_map(|b| seqs[*b].get(pos[*b]).map(|(_, n)| (*b, *n)))
                    .find(|(_, n)| *n != name)
                    .unwrap_or((a, name));
                return Err(issue(
                    step_path(a, seqs[a][pos[a]].0),
                    format!(
                        "deadlock: actor {:?} waits at barrier {name:?} while actor {:?} waits at barrier {other:?} first; list shared barriers in the same order",
                        actors[a].name, actors[b].name
                    ),
                ));
            }
        }
    }
}
