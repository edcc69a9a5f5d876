//! Putting a VM back between two programs that share it (the fuzzer's stream of programs, the
//! phases of a phased scenario): vCPUs resumed if the program stopped them, and every device a
//! program unplugged re-added (found by devno in `list_subchannels`). Whatever else the
//! program left in the kernel stays: that is the history some crashes need.

use std::time::Duration;

use ccwrig_proto::{Op, Outcome, Rest};

use super::{host_ops, Session};
use crate::scenario::Scenario;

/// Resumes stopped vCPUs and re-adds unplugged devices; an error says why the VM is not fit
/// for the next program.
pub async fn restore(session: &mut Session, program: &Scenario) -> Result<(), String> {
    let vm = &session.vm;
    if program.stops() {
        let r = host_ops::execute(vm, &Op::Cont).await;
        if r.outcome != Outcome::Ok {
            return Err(format!("cont: {}", r.outcome));
        }
    }
    if !program.unplugs() {
        return Ok(());
    }
    let missing = missing_devices(session).await?;
    for id in &missing {
        let r = host_ops::execute(&session.vm, &Op::DeviceAdd { device: id.clone() }).await;
        if r.outcome != Outcome::Ok {
            return Err(format!("device_add {id}: {}", r.outcome));
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    // The guest sees the new subchannel after a CRW; give it a moment, then check.
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if missing_devices(session).await?.is_empty() {
            cio_settle(session, program.machine.rest).await?;
            return at_rest(session, program.machine.rest).await;
        }
    }
    Err(format!("devices {missing:?} did not come back"))
}

/// Whether the guest shows every device of the machine where it rests, waiting as long as the
/// device-state oracle does. The settle does not wait for a re-added device's auto-online (the
/// async work queue), and it can take longer than the settle's own online wait: on debug, with
/// three VMs on two cores, the re-added device's registration waited 12 s behind cio's walk and
/// its online had not come 22 s after the re-add. The next program's bind to vfio_ccw then
/// raced that online, and its ORB corrupted vfio_ccw's mdev parent (`corrupted list in
/// kobj_kset_leave`, the race of `unbind_during_ccw_auto_online`): a crash this VM's reuse
/// arranged, which the program alone in a fresh VM never meets.
async fn at_rest(session: &Session, rest: Rest) -> Result<(), String> {
    let Some(now) = super::settle::snapshot(&session.vm, session.pace).await else {
        return Err("no snapshot of the guest's devices after the re-add".into());
    };
    let (_, found) = session.device_state(now, &[], rest).await;
    if found.is_empty() {
        return Ok(());
    }
    let titles: Vec<String> = found.iter().map(|d| d.title()).collect();
    Err(format!(
        "devices not at rest after the re-add: {}",
        titles.join("; ")
    ))
}

/// Waits for the guest's channel subsystem to settle (the agent's cleanup, which has nothing
/// left to undo here, ends with that wait): a re-added subchannel's probe schedules an
/// evaluation of every subchannel id, which on a lockdep kernel runs ~6 s, and cio's single
/// work queue holds the next program's unregistrations behind it. `unplug_while_open_idle`
/// after `unplug_idle_device` in one lockdep VM then never saw the removal it waits for (4 of 4;
/// it passes in a fresh VM and on fast).
/// With the subchannels at rest on vfio_ccw, a re-added one (probed by io_subchannel, as
/// every new subchannel is) is given back to vfio_ccw too, once its ccw device is online.
pub(super) async fn cio_settle(session: &Session, rest: Rest) -> Result<(), String> {
    let wait_ms = ccwrig_proto::default_online_wait_ms();
    let (_, r) = session
        .vm
        .agent
        .request(
            "restore",
            Op::Cleanup {
                online_wait_ms: session.pace.ms(wait_ms),
                rest,
            },
            session.pace.ms(wait_ms + 5000),
        )
        .await
        .map_err(|e| format!("settle: {e}"))?;
    match r.outcome {
        Outcome::Ok => Ok(()),
        o => Err(format!("settle: {o}")),
    }
}

/// Device ids of the session's machine whose devno the guest does not list.
async fn missing_devices(session: &Session) -> Result<Vec<String>, String> {
    let (_, r) = session
        .vm
        .agent
        .request("restore", Op::ListSubchannels, session.pace.ms(5000))
        .await
        .map_err(|e| format!("list_subchannels: {e}"))?;
    if r.outcome != Outcome::Ok {
        return Err(format!("list_subchannels: {}", r.outcome));
    }
    let list: ccwrig_proto::data::SubchannelList = serde_json::from_value(r.data)
        .map_err(|e| format!("list_subchannels: not a subchannel list: {e}"))?;
    let listed: Vec<&str> = list
        .subchannels
        .iter()
        .filter_map(|s| s.devno.as_deref())
        .collect();
    Ok(session
        .machine
        .devices
        .iter()
        .filter(|d| !listed.contains(&d.bus_id().as_str()))
        .map(|d| d.id.clone())
        .collect())
}
