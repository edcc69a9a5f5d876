//! A scenario document -> [`Scenario`]: the shape of the file (sections, their keys and types).
//! What the values mean together (barriers, handles, devices) is `validate`'s job.

use std::collections::BTreeMap;
use std::path::Path;

use toml::de::{DeTable, DeValue};

use super::error::Located;
use super::model::*;
use super::reader::{self, child, index, SpanMap, TableReader, Value};
use super::step::parse_step;
use crate::kernel::Profile;
use crate::oracle::fsm::Rule;

const TOP_KEYS: &[&str] = &[
    "description",
    "known_finding",
    "machine",
    "setup",
    "actors",
    "race",
    "teardown",
    "expect",
];
const MACHINE_KEYS: &[&str] = &["profile", "devices", "append", "nested", "rest"];
const DEVICE_KEYS: &[&str] = &["id", "devno"];
const ACTOR_KEYS: &[&str] = &["steps"];
const RACE_KEYS: &[&str] = &["repeat", "jitter_ms", "seed"];
const FINDING_KEYS: &[&str] = &["title", "note", "evidence"];
const EXPECT_KEYS: &[&str] = &[
    "crash",
    "dmesg_contains",
    "dmesg_not_contains",
    "fsm_violations",
    "fsm_final",
    "leaks",
];

/// The keys of a phased file's top level: the programs are in `[[phase]]` tables.
const PHASED_KEYS: &[&str] = &["description", "known_finding", "phase"];

/// A parsed document and the spans of everything in it: one map per program, the history
/// phases' first (their field paths are relative to their `[[phase]]` table), the last
/// program's (or the only one's) last.
pub(crate) struct Parsed {
    pub scenario: Scenario,
    pub spans: Vec<SpanMap>,
}

/// Parses the document: an ordinary scenario, or a phased file whose `[[phase]]` tables each
/// hold one (the programs run in order in one VM).
pub(crate) fn parse_document(
    text: &str,
    name: &str,
    origin: Option<&Path>,
) -> Result<Parsed, Located> {
    let root = DeTable::parse(text).map_err(|e| {
        // The message of a syntax error is the parser's own; its span is where it gave up.
        Located::new(e.span(), "", format!("TOML syntax: {}", e.message().trim()))
    })?;
    let mut spans = SpanMap::default();
    let root_value: Value<'_> = toml::Spanned::new(root.span(), DeValue::Table(root.into_inner()));
    let top = TableReader::new(&root_value, "", &mut spans)?;
    if !top.has("phase") {
        let mut scenario = parse_program(top, text, &mut spans)?;
        scenario.name = name.to_string();
        scenario.path = origin.map(Path::to_path_buf);
        return Ok(Parsed {
            scenario,
            spans: vec![spans],
        });
    }
    parse_phased(top, text, name, origin, spans)
}

fn parse_phased(
    mut top: TableReader<'_, '_>,
    text: &str,
    name: &str,
    origin: Option<&Path>,
    mut spans: SpanMap,
) -> Result<Parsed, Located> {
    // A program's own sections at the top would be silently ambiguous: which phase are they?
    if let Some(k) = TOP_KEYS
        .iter()
        .find(|k| !PHASED_KEYS.contains(k) && top.has(k))
    {
        return Err(Located::new(
            top.key_span(k),
            *k,
            format!(
                "a phased file holds its programs in [[phase]] tables: move {k:?} into one \
                 (the top level has only \"description\", \"known_finding\" and the phases)"
            ),
        ));
    }
    let description = description(&mut top, &mut spans)?;
    let known_finding = top
        .get("known_finding", &mut spans)
        .map(|v| parse_known_finding(v, &mut spans))
        .transpose()?;
    let phases_v = top.required("phase", &mut spans)?;
    let items = reader::as_array(phases_v, "phase")?;
    if items.is_empty() {
        return Err(Located::new(
            Some(phases_v.span()),
            "phase",
            "a phased file needs at least one [[phase]]",
        ));
    }
    top.finish(PHASED_KEYS)?;
    let mut programs = Vec::with_capacity(items.len());
    let mut maps = Vec::with_capacity(items.len());
    for (i, v) in items.iter().enumerate() {
        let at = index("phase", i);
        let mut ps = SpanMap::default();
        let r = TableReader::new(v, "", &mut ps).map_err(|l| in_phase(l, &at))?;
        let mut p = parse_program(r, text, &mut ps).map_err(|l| in_phase(l, &at))?;
        if p.known_finding.is_some() {
            return Err(in_phase(
                Located::new(
                    ps.find("known_finding"),
                    "known_finding",
                    "a known finding is about the whole sequence: put it at the top of the file",
                ),
                &at,
            ));
        }
        p.name = format!("{name}.phase{}", i + 1);
        p.path = origin.map(Path::to_path_buf);
        programs.push(p);
        maps.push(ps);
    }
    let mut last = programs
        .pop()
        .ok_or_else(|| Located::new(Some(phases_v.span()), "phase", "no phases"))?;
    last.name = name.to_string();
    last.description = description;
    last.known_finding = known_finding;
    last.history = programs;
    Ok(Parsed {
        scenario: last,
        spans: maps,
    })
}

/// An error inside the i-th phase: its field path is made the document's (`phase[2].actors`).
pub(crate) fn in_phase(mut l: Located, at: &str) -> Located {
    l.path = if l.path.is_empty() {
        at.to_string()
    } else {
        format!("{at}.{}", l.path)
    };
    l
}

fn description(top: &mut TableReader<'_, '_>, spans: &mut SpanMap) -> Result<String, Located> {
    let at = top.span.start;
    top.string("description", spans)?.ok_or_else(|| {
        Located::new(
            Some(at..at),
            top.path.clone(),
            "missing field \"description\": say what the scenario exercises and why",
        )
    })
}

/// One program from its table (the document's top level, or a `[[phase]]`); name and path
/// are the caller's to set.
fn parse_program(
    mut top: TableReader<'_, '_>,
    text: &str,
    spans: &mut SpanMap,
) -> Result<Scenario, Located> {
    let description = description(&mut top, spans)?;
    let known_finding = top
        .get("known_finding", spans)
        .map(|v| parse_known_finding(v, spans))
        .transpose()?;
    let machine = parse_machine(top.required("machine", spans)?, spans)?;
    let setup = parse_steps_array(top.get("setup", spans), "setup", text, spans)?;
    let actors = parse_actors(top.required("actors", spans)?, text, spans)?;
    let race = match top.get("race", spans) {
        Some(v) => parse_race(v, spans)?,
        None => Race::default(),
    };
    let teardown = parse_steps_array(top.get("teardown", spans), "teardown", text, spans)?;
    let expect = match top.get("expect", spans) {
        Some(v) => parse_expectations(v, spans)?,
        None => Expectations::default(),
    };
    top.finish(TOP_KEYS)?;

    Ok(Scenario {
        name: String::new(),
        path: None,
        description,
        known_finding,
        machine,
        setup,
        actors,
        race,
        teardown,
        expect,
        history: vec![],
    })
}

/// A rule name of the FSM oracle: a typo would otherwise allow nothing and never match.
fn parse_rule(v: &Value<'_>, path: &str) -> Result<Rule, Located> {
    let name = reader::as_string(v, path)?;
    Rule::from_name(&name).ok_or_else(|| {
        let names: Vec<&str> = Rule::ALL.iter().map(|r| r.name()).collect();
        Located::new(
            Some(v.span()),
            path,
            format!(
                "unknown FSM rule {name:?}; the rules are: {}",
                names.join(", ")
            ),
        )
    })
}

fn parse_known_finding(v: &Value<'_>, spans: &mut SpanMap) -> Result<KnownFinding, Located> {
    let mut r = TableReader::new(v, "known_finding", spans)?;
    let title = match r.string("title", spans)? {
        Some(t) => t,
        None => {
            return Err(Located::new(
                Some(v.span()),
                "known_finding",
                "missing field \"title\"",
            ))
        }
    };
    if let Err(e) = regex::Regex::new(&title) {
        return Err(Located::new(
            spans.find("known_finding.title"),
            "known_finding.title",
            format!("bad regex: {e}"),
        ));
    }
    let note = r.string("note", spans)?.unwrap_or_default();
    let evidence = r.string("evidence", spans)?.unwrap_or_default();
    r.finish(FINDING_KEYS)?;
    Ok(KnownFinding {
        title,
        note,
        evidence,
    })
}

fn parse_machine(v: &Value<'_>, spans: &mut SpanMap) -> Result<Machine, Located> {
    let mut r = TableReader::new(v, "machine", spans)?;
    let profile = match r.string("profile", spans)? {
        None => None,
        Some(p) => Some(Profile::from_name(&p).ok_or_else(|| {
            let names: Vec<&str> = Profile::ALL.iter().map(|p| p.name()).collect();
            Located::new(
                spans.find("machine.profile"),
                "machine.profile",
                format!(
                    "unknown profile {p:?}, expected one of {}",
                    reader::one_of(&names)
                ),
            )
        })?),
    };
    let devices_v = r.required("devices", spans)?;
    let mut devices = Vec::new();
    for (i, d) in reader::as_array(devices_v, "machine.devices")?
        .iter()
        .enumerate()
    {
        let path = index("machine.devices", i);
        let mut dr = TableReader::new(d, &path, spans)?;
        let id = dr.string("id", spans)?;
        let devno = dr.string("devno", spans)?;
        dr.finish(DEVICE_KEYS)?;
        let (Some(id), Some(devno)) = (id, devno) else {
            return Err(Located::new(
                Some(d.span()),
                path,
                "a device needs both \"id\" and \"devno\"",
            ));
        };
        devices.push(DeviceSpec { id, devno });
    }
    let append = r.string("append", spans)?.unwrap_or_default();
    let nested = match r.get("nested", spans) {
        None => false,
        Some(v) => match v.get_ref() {
            DeValue::Boolean(b) => *b,
            _ => {
                return Err(Located::new(
                    Some(v.span()),
                    "machine.nested",
                    "expected true or false",
                ))
            }
        },
    };
    let rest = match r.string("rest", spans)? {
        None => ccwrig_proto::Rest::default(),
        Some(d) => ccwrig_proto::Rest::from_driver(&d).ok_or_else(|| {
            Located::new(
                spans.find("machine.rest"),
                "machine.rest",
                format!(
                    "unknown rest driver {d:?}, expected one of {}",
                    reader::one_of(&[
                        ccwrig_proto::DRIVER_IO_SUBCHANNEL,
                        ccwrig_proto::DRIVER_VFIO_CCW
                    ])
                ),
            )
        })?,
    };
    r.finish(MACHINE_KEYS)?;
    Ok(Machine {
        profile,
        devices,
        append,
        nested,
        rest,
    })
}

fn parse_steps_array(
    v: Option<&Value<'_>>,
    path: &str,
    text: &str,
    spans: &mut SpanMap,
) -> Result<Vec<Step>, Located> {
    let Some(v) = v else { return Ok(Vec::new()) };
    reader::as_array(v, path)?
        .iter()
        .enumerate()
        .map(|(i, s)| parse_step(s, &index(path, i), text, spans))
        .collect()
}

fn parse_actors(v: &Value<'_>, text: &str, spans: &mut SpanMap) -> Result<Vec<Actor>, Located> {
    let r = TableReader::new(v, "actors", spans)?;
    let mut actors = Vec::new();
    for (k, av) in r.entries() {
        let name = k.get_ref().to_string();
        let path = child("actors", &name);
        spans.record(&path, k.span());
        let mut ar = TableReader::new(av, &path, spans)?;
        let steps_v = ar.get("steps", spans);
        let steps = parse_steps_array(steps_v, &child(&path, "steps"), text, spans)?;
        ar.finish(ACTOR_KEYS)?;
        actors.push(Actor { name, steps });
    }
    // Every key was consumed as an actor name; nothing for `finish` to reject.
    Ok(actors)
}

fn parse_race(v: &Value<'_>, spans: &mut SpanMap) -> Result<Race, Located> {
    let mut r = TableReader::new(v, "race", spans)?;
    let mut race = Race::default();
    if let Some(n) = r.u64("repeat", spans)? {
        race.repeat = u32::try_from(n).map_err(|_| {
            Located::new(
                spans.find("race.repeat"),
                "race.repeat",
                "repeat is too large",
            )
        })?;
    }
    if let Some(j) = r.get("jitter_ms", spans) {
        race.jitter_ms = reader::as_range(j, "race.jitter_ms")?;
    }
    race.seed = r.u64("seed", spans)?;
    r.finish(RACE_KEYS)?;
    Ok(race)
}

fn parse_expectations(v: &Value<'_>, spans: &mut SpanMap) -> Result<Expectations, Located> {
    let mut r = TableReader::new(v, "expect", spans)?;
    let mut e = Expectations::default();
    if let Some(c) = r.string("crash", spans)? {
        e.crash = if c == "none" {
            CrashExpect::None
        } else {
            regex::Regex::new(&c).map_err(|err| {
                Located::new(
                    spans.find("expect.crash"),
                    "expect.crash",
                    format!("bad regex: {err}"),
                )
            })?;
            CrashExpect::TitleRegex(c)
        };
    }
    e.dmesg_contains = r.strings("dmesg_contains", spans)?.unwrap_or_default();
    e.dmesg_not_contains = r.strings("dmesg_not_contains", spans)?.unwrap_or_default();
    if let Some(fv) = r.get("fsm_violations", spans) {
        e.fsm_violations = match fv.get_ref() {
            DeValue::String(s) if s == "none" => FsmViolationsExpect::None,
            DeValue::Array(_) => {
                let rules = reader::as_array(fv, "expect.fsm_violations")?
                    .iter()
                    .enumerate()
                    .map(|(i, x)| parse_rule(x, &index("expect.fsm_violations", i)))
                    .collect::<Result<Vec<_>, _>>()?;
                FsmViolationsExpect::Rules(rules)
            }
            _ => {
                return Err(Located::new(
                    Some(fv.span()),
                    "expect.fsm_violations",
                    "expected \"none\" or a list of rule names",
                ))
            }
        };
    }
    if let Some(ff) = r.get("fsm_final", spans) {
        e.fsm_final = parse_fsm_final(ff, spans)?;
    }
    if let Some(l) = r.string("leaks", spans)? {
        e.leaks = match l.as_str() {
            "none" => LeaksExpect::None,
            "ignore" => LeaksExpect::Ignore,
            _ => {
                return Err(Located::new(
                    spans.find("expect.leaks"),
                    "expect.leaks",
                    format!("expected \"none\" or \"ignore\", found {l:?}"),
                ))
            }
        };
    }
    r.finish(EXPECT_KEYS)?;
    Ok(e)
}

fn parse_fsm_final(
    v: &Value<'_>,
    spans: &mut SpanMap,
) -> Result<BTreeMap<String, String>, Located> {
    let r = TableReader::new(v, "expect.fsm_final", spans)?;
    let mut out = BTreeMap::new();
    for (k, sv) in r.entries() {
        let path = child("expect.fsm_final", k.get_ref());
        spans.record(&path, k.span());
        let state = reader::as_string(sv, &path)?;
        if !crate::oracle::fsm::map::STATES.contains(&state.as_str()) {
            return Err(Located::new(
                Some(sv.span()),
                path,
                format!(
                    "unknown FSM state {state:?}, expected one of {}",
                    reader::one_of(crate::oracle::fsm::map::STATES)
                ),
            ));
        }
        out.insert(k.get_ref().to_string(), state);
    }
    Ok(out)
}
