//! What a program must keep so that a hang it shows is the kernel's and not its own. The
//! generator keeps these rules by construction; a mutation or a shrinker's cut may break them,
//! so mutants and minimised inputs are checked before they reach a VM.

use ccwrig_proto::{FdPart, Op};

use crate::scenario::{Scenario, Step};

/// The rules the generator keeps by construction and a mutation may break. Each breach would
/// be a hang or a dead guest the program made, reported as if the kernel had:
/// - an `io_stall` holds the driver's io_mutex until its actor's own `io_release`: every stall
///   must be released later by the same actor (setup included), and that actor must not wait
///   for the mutex on that handle in between (reset, close, region reads and accesses, DMA
///   unmaps, bad input, ioas);
/// - a handle opened must be closed (all its parts) by a later step, its own actor's or, for
///   a handle the setup opened, any actor's: an mdev remove or an unbind waits for the last
///   close, and would wait past the program;
/// - a `stop` must be followed by a `cont` of the same actor;
/// - at most one `poweroff` or `reboot`, by a guest actor, and then `repeat = 1`.
pub fn sound(p: &Scenario) -> Result<(), &'static str> {
    handles_closed(p)?;
    stalls_released(&p.setup)?;
    for a in &p.actors {
        stalls_released(&a.steps)?;
        let mut stopped = false;
        for op in a.steps.iter().filter_map(Step::op) {
            match op {
                Op::Stop => stopped = true,
                Op::Cont => stopped = false,
                _ => {}
            }
        }
        if stopped {
            return Err("a stop without a later cont");
        }
    }
    let ends = |steps: &[Step]| {
        steps
            .iter()
            .filter_map(Step::op)
            .filter(|o| matches!(o, Op::Poweroff | Op::Reboot))
            .count()
    };
    if ends(&p.setup) + ends(&p.teardown) > 0 {
        return Err("poweroff or reboot outside the actors");
    }
    let in_actors: usize = p.actors.iter().map(|a| ends(&a.steps)).sum();
    if in_actors > 1 {
        return Err("more than one poweroff or reboot");
    }
    if in_actors == 1 && p.race.repeat > 1 {
        return Err("poweroff or reboot in a repeated race");
    }
    Ok(())
}

/// Whether `op` closes every part of `handle`.
fn closes(op: &Op, handle: &str) -> bool {
    matches!(op, Op::Close { handle: h, order } if h == handle && order.len() == FdPart::DEFAULT_ORDER.len())
}

fn handles_closed(p: &Scenario) -> Result<(), &'static str> {
    let ops = |steps: &[Step]| {
        steps
            .iter()
            .filter_map(Step::op)
            .cloned()
            .collect::<Vec<Op>>()
    };
    for (i, op) in p.setup.iter().filter_map(Step::op).enumerate() {
        if let Op::Open { handle, .. } = op {
            let later = p.setup.iter().skip(i + 1).filter_map(Step::op);
            let actors = p
                .actors
                .iter()
                .flat_map(|a| a.steps.iter())
                .filter_map(Step::op);
            if !later.chain(actors).any(|o| closes(o, handle)) {
                return Err("a handle the setup opens is never closed");
            }
        }
    }
    for a in &p.actors {
        let own = ops(&a.steps);
        for (i, op) in own.iter().enumerate() {
            if let Op::Open { handle, .. } = op {
                if !own[i + 1..].iter().any(|o| closes(o, handle)) {
                    return Err("a handle an actor opens is not closed later by that actor");
                }
            }
        }
    }
    Ok(())
}

/// Operations that wait for the driver's io_mutex of their handle.
fn waits_for_io_mutex(op: &Op) -> bool {
    matches!(
        op,
        Op::Reset { .. }
            | Op::Close { .. }
            | Op::ReadRegion { .. }
            | Op::DmaUnmap { .. }
            | Op::BadInput { .. }
            | Op::RegionAccess { .. }
            | Op::Ioas { .. }
    )
}

fn stalls_released(steps: &[Step]) -> Result<(), &'static str> {
    let mut held: Vec<&str> = Vec::new();
    for op in steps.iter().filter_map(Step::op) {
        match op {
            Op::IoStall { handle, .. } => {
                if held.contains(&handle.as_str()) {
                    return Err("an io_stall on a handle already stalled");
                }
                held.push(handle);
            }
            Op::IoRelease { handle, .. } => held.retain(|h| h != handle),
            o if waits_for_io_mutex(o) && o.handle().is_some_and(|h| held.contains(&h)) => {
                return Err("a step waits for the io_mutex its own actor's io_stall holds");
            }
            _ => {}
        }
    }
    if held.is_empty() {
        Ok(())
    } else {
        Err("an io_stall never released")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fuzz::gen::Generator;

    /// A valid scenario whose guest actor `a` and host run the given steps (TOML inline
    /// tables), with an mdev `m` and, opened by the setup, a handle `s`; a second guest actor
    /// closes `s` when `close_s` says so.
    fn program(close_s: bool, a: &str, host: &str) -> Scenario {
        let b = match close_s {
            true => r#"{ op = "close", handle = "s" }"#,
            false => r#"{ op = "sleep", ms = 1 }"#,
        };
        let text = format!(
            r#"description = "sound test"
[machine]
devices = [{{ id = "rng0", devno = "fe.0.0002" }}]
[[setup]]
op = "bind"
schid = "0.0.0000"
driver = "vfio_ccw"
[[setup]]
op = "mdev_create"
parent = "0.0.0000"
mdev = "m"
[[setup]]
op = "open"
mdev = "m"
handle = "s"
[actors.a]
steps = [{a}]
[actors.b]
steps = [{b}]
[actors.host]
steps = [{host}]
"#
        );
        crate::scenario::parse_str(&text, "t", None).unwrap_or_else(|e| panic!("{e}\n{text}"))
    }

    #[test]
    fn each_rule_rejects_its_own_hang() {
        let sleep = r#"{ op = "sleep", ms = 1 }"#;
        let table: &[(&str, &str, bool, Result<(), &str>)] = &[
            (
                r#"{ op = "open", mdev = "m", handle = "h" }, { op = "close", handle = "h" }"#,
                sleep,
                false,
                Err("a handle the setup opens is never closed"),
            ),
            (
                r#"{ op = "open", mdev = "m", handle = "h" }, { op = "close", handle = "h" }, { op = "close", handle = "s" }"#,
                sleep,
                false,
                Ok(()),
            ),
            (
                r#"{ op = "open", mdev = "m", handle = "h" }, { op = "close", handle = "h", order = ["container"] }, { op = "close", handle = "s" }"#,
                sleep,
                false,
                Err("a handle an actor opens is not closed later by that actor"),
            ),
            (
                r#"{ op = "io_stall", handle = "s" }, { op = "reset", handle = "s" }, { op = "io_release", handle = "s" }, { op = "close", handle = "s" }"#,
                sleep,
                false,
                Err("a step waits for the io_mutex its own actor's io_stall holds"),
            ),
            (
                r#"{ op = "io_stall", handle = "s" }, { op = "close", handle = "s" }"#,
                sleep,
                false,
                Err("a step waits for the io_mutex its own actor's io_stall holds"),
            ),
            (
                r#"{ op = "io_stall", handle = "s" }, { op = "io_release", handle = "s" }, { op = "close", handle = "s" }"#,
                r#"{ op = "stop" }"#,
                false,
                Err("a stop without a later cont"),
            ),
            (
                r#"{ op = "poweroff" }, { op = "reboot" }"#,
                sleep,
                true,
                Err("more than one poweroff or reboot"),
            ),
            (r#"{ op = "reboot" }"#, sleep, true, Ok(())),
        ];
        for (a, host, close_s, want) in table {
            let p = program(*close_s, a, host);
            assert_eq!(sound(&p), *want, "a = [{a}], host = [{host}]");
        }
    }

    /// What the generator makes is sound, except programs that open a removed mdev on
    /// purpose (the open fails, and no close follows).
    #[test]
    fn generated_programs_are_mostly_sound() {
        let g = Generator::default();
        let unsound: Vec<u64> = (0..2000u64)
            .filter(|s| sound(&g.generate(*s).program).is_err())
            .collect();
        assert!(
            unsound.len() < 100,
            "{} of 2000 unsound, e.g. seed {:?}",
            unsound.len(),
            unsound.first()
        );
    }
}
