//! The host actor's operations, through QMP.

use std::time::{Duration, Instant};

use ccwrig_proto::{Op, OpResult, Outcome};

use crate::vm::Vm;

/// DEVICE_DELETED arrives once the guest has released the device; on a guest whose cio work
/// queue is stuck it may never come, which is itself worth reporting.
const DEVICE_DELETED_WAIT: Duration = Duration::from_secs(10);

fn failed(msg: String) -> Outcome {
    Outcome::Failed { message: msg }
}

/// Runs a host-side op. QMP errors become `Failed` outcomes with QEMU's own words: a refused
/// `device_add` is data for the verdict, not a harness error.
pub async fn execute(vm: &Vm, op: &Op) -> OpResult {
    let t = Instant::now();
    let mut data = serde_json::Value::Null;
    let outcome = match op {
        Op::DeviceDel { device } => {
            let mark = vm.qmp.event_mark();
            match vm
                .qmp
                .execute(&qapi::qmp::device_del { id: device.clone() })
                .await
            {
                Err(e) => failed(e.to_string()),
                Ok(_) => {
                    let dev = device.clone();
                    let r = vm
                        .qmp
                        .wait_event("DEVICE_DELETED", mark, DEVICE_DELETED_WAIT, move |e| {
                            e.data.get("device").and_then(|d| d.as_str()) == Some(dev.as_str())
                        })
                        .await;
                    match r {
                        Ok(ev) => {
                            data = serde_json::json!({"device_deleted_after_ms": ev.at_ms});
                            Outcome::Ok
                        }
                        Err(e) => failed(e.to_string()),
                    }
                }
            }
        }
        Op::DeviceAdd { device } => match vm.command.find_device(device) {
            None => failed(format!("no device {device} in the machine definition")),
            Some(d) => match vm.qmp.execute(&d.qmp_device_add()).await {
                Ok(_) => Outcome::Ok,
                Err(e) => failed(e.to_string()),
            },
        },
        Op::Stop => match vm.qmp.execute(&qapi::qmp::stop {}).await {
            Ok(_) => Outcome::Ok,
            Err(e) => failed(e.to_string()),
        },
        Op::Cont => match vm.qmp.execute(&qapi::qmp::cont {}).await {
            Ok(_) => Outcome::Ok,
            Err(e) => failed(e.to_string()),
        },
        Op::SystemReset => match vm.qmp.execute(&qapi::qmp::system_reset {}).await {
            Ok(_) => Outcome::Ok,
            Err(e) => failed(e.to_string()),
        },
        Op::SystemPowerdown => match vm.qmp.execute(&qapi::qmp::system_powerdown {}).await {
            Ok(_) => Outcome::Ok,
            Err(e) => failed(e.to_string()),
        },
        Op::Sleep { ms } => {
            tokio::time::sleep(Duration::from_millis(*ms)).await;
            Outcome::Ok
        }
        other => failed(format!("{} is a guest-side operation", other.name())),
    };
    OpResult {
        cover: None,
        fault: None,
        outcome,
        start_us: 0,
        duration_us: t.elapsed().as_micros() as u64,
        data,
    }
}
