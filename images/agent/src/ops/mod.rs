//! Every guest-side operation, dispatched from the one `Op` enum. Each returns structured data
//! or an `OpError` naming the failed call; none of them panics on what the kernel answers.

mod bad_input;
mod chp;
mod cleanup;
mod consumer;
mod css;
mod device;
mod dma;
mod exec;
mod gcov;
mod inner_qemu;
mod io;
mod ioas;
mod irq;
mod mdev;
mod misc;
mod open;
mod prep;
mod region;
mod snapshot;
mod stall;

use std::sync::Arc;

use ccwrig_proto::{Op, Outcome};
use serde_json::Value;

use crate::state::{Agent, Handle};
use crate::sys::SysError;

pub enum OpError {
    /// A system call failed (a kernel verdict); the data gathered before it is kept.
    Sys(SysError, Value),
    /// The agent could not do what was asked (unknown name, bad argument).
    Failed(String, Value),
}

impl From<SysError> for OpError {
    fn from(e: SysError) -> Self {
        OpError::Sys(e, Value::Null)
    }
}

impl OpError {
    pub fn failed(msg: impl Into<String>) -> Self {
        OpError::Failed(msg.into(), Value::Null)
    }

    pub fn with_data(self, data: Value) -> Self {
        match self {
            OpError::Sys(e, _) => OpError::Sys(e, data),
            OpError::Failed(m, _) => OpError::Failed(m, data),
        }
    }

    pub fn into_outcome(self) -> (Outcome, Value) {
        match self {
            OpError::Sys(e, d) => (
                Outcome::Errno {
                    name: ccwrig_proto::errno_name(e.errno),
                    code: e.errno,
                    call: e.call,
                },
                d,
            ),
            OpError::Failed(m, d) => (Outcome::Failed { message: m }, d),
        }
    }
}

pub type OpRes = Result<Value, OpError>;

pub fn run(agent: &Arc<Agent>, actor: &str, op: &Op) -> OpRes {
    match op {
        Op::ListSubchannels => css::list(),
        Op::Bind { schid, driver } => css::bind(agent, schid, driver),
        Op::Unbind { schid } => css::unbind(agent, schid),
        Op::Rescan => css::rescan(),
        Op::MdevCreate { parent, mdev, uuid } => mdev::create(agent, parent, mdev, uuid.as_deref()),
        Op::MdevRemove { mdev } => mdev::remove(agent, mdev),
        Op::AvailableInstances { parent } => mdev::available_instances(parent),
        Op::Open { mdev, handle, via } => open::open(agent, mdev, handle, *via),
        Op::Close { handle, order } => open::close(agent, handle, order),
        Op::GetInfo { handle } => device::get_info(&*need(agent, handle)?),
        Op::Consumer { handle, on_request } => {
            consumer::start(agent, &need(agent, handle)?, *on_request, actor)
        }
        Op::AwaitRequest {
            handle,
            count,
            wait_ms,
        } => consumer::await_requests(&*need(agent, handle)?, *count, *wait_ms),
        Op::Reset { handle } => device::reset(&*need(agent, handle)?),
        Op::SetIrq {
            handle,
            irq,
            action,
            count,
        } => irq::set(&*need(agent, handle)?, *irq, *action, *count),
        Op::DmaUnmap {
            handle,
            count,
            remap,
        } => dma::unmap(&*need(agent, handle)?, *count, *remap),
        Op::Io {
            handle,
            count,
            suspend,
            irq_wait_ms,
            program: None,
        } => io::sense_id(&*need(agent, handle)?, *count, *suspend, *irq_wait_ms),
        Op::Io {
            handle,
            count,
            suspend,
            irq_wait_ms,
            program: Some(p),
        } => io::program(&*need(agent, handle)?, p, *count, *suspend, *irq_wait_ms),
        Op::IoStall { handle, wait_ms } => stall::start(&*need(agent, handle)?, *wait_ms),
        Op::IoRelease {
            handle,
            irq_wait_ms,
        } => stall::release(&*need(agent, handle)?, *irq_wait_ms),
        Op::Halt { handle } => io::async_cmd(&*need(agent, handle)?, false),
        Op::Clear { handle } => io::async_cmd(&*need(agent, handle)?, true),
        Op::ReadRegion { handle, region } => device::read_region(&*need(agent, handle)?, *region),
        Op::BadInput { handle, kind } => bad_input::run(&*need(agent, handle)?, *kind),
        Op::RegionAccess {
            handle,
            region,
            access,
            offset,
            size,
            threads,
            count,
        } => region::run(
            &*need(agent, handle)?,
            &region::Access {
                region: *region,
                access: *access,
                offset: *offset,
                size: *size,
                threads: *threads,
                count: *count,
            },
        ),
        Op::Ioas { handle, action } => ioas::run(&*need(agent, handle)?, *action),
        Op::Chp {
            chpid,
            action,
            hold_ms,
        } => chp::chp(agent, chpid, *action, *hold_ms),
        Op::Online { schid, online } => chp::online(agent, schid, *online),
        Op::Snapshot => snapshot::take(agent),
        Op::Kmemleak { action } => misc::kmemleak(*action),
        Op::Gcov { action } => gcov::gcov(*action),
        Op::Sleep { ms } => misc::sleep(*ms),
        Op::Mark { text } => misc::mark(text),
        Op::Sysrq { key } => misc::sysrq(*key),
        Op::Exec { argv } => exec::run(argv),
        Op::Cleanup {
            online_wait_ms,
            rest,
        } => cleanup::run(agent, *online_wait_ms, *rest),
        Op::Poweroff | Op::Reboot => misc::poweroff_prepare(agent),
        Op::InnerStart {
            name,
            mdev,
            devno,
            paused,
            memory_mib,
            args,
            qmp_wait_ms,
        } => inner_qemu::start(
            agent,
            &inner_qemu::StartArgs {
                name,
                mdev,
                devno,
                paused: *paused,
                memory_mib: *memory_mib,
                args,
                qmp_wait_ms: *qmp_wait_ms,
            },
        ),
        Op::InnerQmp {
            name,
            command,
            arguments,
        } => inner_qemu::qmp_command(agent, name, command, arguments.as_ref()),
        Op::InnerQuit { name } => inner_qemu::quit(agent, name),
        Op::InnerSignal { name, signal } => inner_qemu::signal(agent, name, *signal),
        Op::InnerDeviceDel { name, wait_ms } => inner_qemu::device_del(agent, name, *wait_ms),
        Op::InnerDeviceAdd { name } => inner_qemu::device_add(agent, name),
        Op::InnerSystemReset { name, count } => inner_qemu::system_reset(agent, name, *count),
        Op::InnerWait { name, timeout_ms } => inner_qemu::wait(agent, name, *timeout_ms),
        Op::DeviceDel { .. }
        | Op::DeviceAdd { .. }
        | Op::Stop
        | Op::Cont
        | Op::SystemReset
        | Op::SystemPowerdown => Err(OpError::failed("host-side op")),
    }
}

fn need(agent: &Agent, name: &str) -> Result<Arc<Handle>, OpError> {
    agent
        .handle(name)
        .ok_or_else(|| OpError::failed(format!("unknown handle {name:?}")))
}

/// The device fd of a handle, or a `Failed` when it was closed.
fn device_fd(h: &Handle) -> Result<crate::state::handle::Fd, OpError> {
    h.device()
        .ok_or_else(|| OpError::failed(format!("handle {:?}: device fd is closed", h.name)))
}

pub use misc::power_off;
