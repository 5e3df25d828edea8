//! `steer dump`: what the kernel holds, read from the pinned maps, with set, policy and WAN names
//! instead of raw bytes. Works while the daemon is down.

use std::{collections::BTreeMap, fmt::Write, path::Path};

use clap::ValueEnum;
use serde_json::{Value, json};
use steer_common::{LB_SLOTS, NO_WAN, action, path};

use super::txt;
use crate::runtime_sets::RuntimeSets;
use crate::{
    dataplane::{
        DataplaneError, Maps, WanName,
        wan_traffic::{TrafficSample, read_pinned},
    },
    model::{Direction, Family, PrefixMap, Rule, RuleKind, last_resort_marks},
};

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Section {
    /// Rule ids: set, match, policy.
    Rules,
    /// Every prefix with its set and policy.
    Sets,
    /// The live policy table: what each rule stamps now.
    Policies,
    /// Packets and bytes per rule, per WAN and per classifier path; per WAN and family, the
    /// packets out that expect an answer and the answers in (passive liveness).
    Counters,
    /// Destinations the router reaches without a WAN: never steered.
    Local,
    /// Hosts learned from DNS answers: address, set, name, expires in.
    Dns,
    All,
}

/// Names the pinned maps carry, so the dump needs no configuration.
pub(crate) struct Names {
    pub generation: u32,
    pub rules: BTreeMap<u32, Rule>,
    /// By WAN slot.
    pub wans: BTreeMap<u32, WanName>,
}

impl Names {
    pub(crate) fn read(maps: &Maps) -> Result<Names, DataplaneError> {
        let generation = maps.active_generation()?;
        Ok(Names {
            generation,
            rules: maps.rules(generation)?,
            wans: maps.wans()?,
        })
    }

    pub(crate) fn set(&self, rule: u32) -> String {
        self.rules
            .get(&rule)
            .map(|r| r.name.clone())
            .unwrap_or_else(|| format!("rule {rule} (unnamed)"))
    }

    pub(crate) fn policy(&self, rule: u32) -> String {
        match self.rules.get(&rule).and_then(|r| r.policy.as_deref()) {
            Some(p) => p.to_owned(),
            None => "-".into(),
        }
    }

    /// What rule `rule` matches on; the default rule for ids the maps do not name.
    pub(crate) fn kind(&self, rule: u32) -> RuleKind {
        self.rules.get(&rule).map_or(RuleKind::Default, |r| r.kind)
    }

    pub(crate) fn wan(&self, slot: u32) -> String {
        if slot == NO_WAN {
            return "-".into();
        }
        self.wans
            .get(&slot)
            .map(|w| w.name.clone())
            .unwrap_or_else(|| format!("wan slot {slot}"))
    }

    /// The WAN a mark belongs to, or what the mark means.
    pub(crate) fn wan_of_mark(&self, mark: u32, mask: u32) -> String {
        if mark & mask == 0 {
            return "none (unmarked: main routing table)".into();
        }
        let (unreachable, blackhole) = last_resort_marks(mask);
        match self.wans.values().find(|w| w.mark == mark & mask) {
            Some(w) => w.name.clone(),
            None if mark & mask == unreachable => "none (last resort: unreachable)".into(),
            None if mark & mask == blackhole => "none (last resort: blackhole)".into(),
            None => format!("unknown mark {:#x}", mark & mask),
        }
    }
}

/// Renders one section (or all) of the pinned state under `pin_dir`, as text or JSON.
/// `runtime` (the daemon's journal of `steer set` entries) marks which prefixes were added at
/// runtime (`None`: not known, no journal was found).
pub fn dump(
    pin_dir: &Path,
    runtime: Option<&RuntimeSets>,
    what: Section,
    as_json: bool,
) -> Result<String, DataplaneError> {
    let maps = Maps::from_pins(pin_dir)?;
    let names = Names::read(&maps)?;
    let view = View {
        maps: &maps,
        names: &names,
        pin_dir,
        runtime,
    };
    let sections = match what {
        Section::All => &[
            Section::Rules,
            Section::Policies,
            Section::Counters,
            Section::Local,
            Section::Dns,
            Section::Sets,
        ][..],
        one => &[one][..],
    };
    if as_json {
        let mut doc = serde_json::Map::new();
        for section in sections {
            let (key, value) = section_json(*section, &view)?;
            doc.insert(key.into(), value);
        }
        doc.insert("generation".into(), json!(names.generation));
        return Ok(format!(
            "{}\n",
            serde_json::to_string_pretty(&Value::Object(doc)).unwrap_or_default()
        ));
    }
    let mut text = format!(
        "pinned state {} (live policy generation {})\n",
        pin_dir.display(),
        names.generation
    );
    for section in sections {
        text.push('\n');
        text.push_str(&section_text(*section, &view)?);
    }
    Ok(text)
}

/// What the sections are read from.
struct View<'a> {
    maps: &'a Maps,
    names: &'a Names,
    pin_dir: &'a Path,
    runtime: Option<&'a RuntimeSets>,
}

/// One section as its key in the JSON document and its value.
fn section_json(section: Section, v: &View) -> Result<(&'static str, Value), DataplaneError> {
    let (maps, names) = (v.maps, v.names);
    Ok(match section {
        Section::Rules => ("rules", rules(maps, names)?),
        Section::Policies => ("policies", policies(maps, names)?),
        Section::Counters => ("counters", counters(maps, names, v.pin_dir)?),
        Section::Sets => ("sets", sets(maps, names, v.runtime)?),
        Section::Local => ("local", local(maps)?),
        Section::Dns => ("dns", super::dns::learned_json(v.pin_dir, names)?),
        Section::All => unreachable!("expanded by dump"),
    })
}

/// One section as a text table.
fn section_text(section: Section, v: &View) -> Result<String, DataplaneError> {
    let (maps, names) = (v.maps, v.names);
    Ok(match section {
        Section::Rules => render_rules(&rules(maps, names)?),
        Section::Policies => render_policies(&policies(maps, names)?),
        Section::Counters => render_counters(&counters(maps, names, v.pin_dir)?),
        Section::Sets => render_sets(&sets(maps, names, v.runtime)?),
        Section::Local => render_local(&local(maps)?),
        Section::Dns => super::dns::render_learned(&super::dns::learned_json(v.pin_dir, names)?),
        Section::All => unreachable!("expanded by dump"),
    })
}

/// Every rule; a set with conditions also with its place in the order and its conditions as
/// the kernel holds them.
fn rules(maps: &Maps, names: &Names) -> Result<Value, DataplaneError> {
    let ordered = maps.ordered().describe()?;
    Ok(Value::Array(
        names
            .rules
            .iter()
            .map(|(id, r)| {
                let mut v = json!({ "rule": id, "set": r.name, "match": r.kind.name(), "policy": names.policy(*id) });
                if let Some(o) = ordered.iter().find(|o| o.rule == *id) {
                    v["order"] = json!(o.position);
                    v["conditions"] = json!(o.conditions);
                }
                v
            })
            .collect(),
    ))
}

fn render_rules(v: &Value) -> String {
    let mut out = "rule  set              match    policy\n".to_owned();
    for r in v.as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "{:<5} {:<16} {:<8} {}",
            // Through `txt`: a JSON number does not pad to a width.
            txt(&r["rule"]),
            r["set"].as_str().unwrap_or_default(),
            r["match"].as_str().unwrap_or_default(),
            r["policy"].as_str().unwrap_or_default()
        );
        if let Some(order) = r.get("order") {
            let conditions: Vec<&str> = r["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            let _ = writeln!(out, "      #{order} in order: {}", conditions.join("; "));
        }
    }
    out
}

fn policies(maps: &Maps, names: &Names) -> Result<Value, DataplaneError> {
    let mut out = Vec::new();
    for id in names.rules.keys() {
        let mut row = json!({ "rule": id, "set": names.set(*id), "policy": names.policy(*id) });
        for (family, key) in [(Family::V4, "verdict"), (Family::V6, "verdict_v6")] {
            row[key] = verdict(maps, names, family, *id)?;
        }
        out.push(row);
    }
    Ok(Value::Array(out))
}

/// What rule `id` stamps on packets of `family` in the live generation.
fn verdict(maps: &Maps, names: &Names, family: Family, id: u32) -> Result<Value, DataplaneError> {
    let entry = maps.policy(names.generation, family, id)?;
    Ok(match entry.action {
        action::MARK => json!({
            "action": "mark", "mark": format!("{:#x}", entry.mark), "mask": format!("{:#x}", entry.mask),
            "wan": names.wan_of_mark(entry.mark, entry.mask),
        }),
        action::BALANCE => {
            let mut share: BTreeMap<String, u32> = BTreeMap::new();
            for slot in maps.lb_slots(names.generation, family, id)? {
                *share.entry(names.wan(slot.wan)).or_default() += 1;
            }
            json!({
                "action": "balance", "mask": format!("{:#x}", entry.mask),
                "slots": share.iter().map(|(w, n)| json!({ "wan": w, "slots": n })).collect::<Vec<_>>(),
            })
        }
        _ => json!({ "action": "none", "wan": "none (unmarked: main routing table)" }),
    })
}

fn render_verdict(verdict: &Value) -> String {
    match verdict["action"].as_str() {
        Some("mark") => format!("mark {} -> {}", txt(&verdict["mark"]), txt(&verdict["wan"])),
        Some("balance") => {
            let parts: Vec<String> = verdict["slots"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|s| format!("{} {}/{LB_SLOTS}", txt(&s["wan"]), txt(&s["slots"])))
                .collect();
            format!("balance: {}", parts.join(", "))
        }
        _ => "unmarked (main routing table)".into(),
    }
}

fn render_policies(v: &Value) -> String {
    let mut out = "rule  set              policy           verdict\n".to_owned();
    for p in v.as_array().into_iter().flatten() {
        let (v4, v6) = (
            render_verdict(&p["verdict"]),
            render_verdict(&p["verdict_v6"]),
        );
        let what = if v4 == v6 {
            v4
        } else {
            format!("IPv4: {v4}; IPv6: {v6}")
        };
        let _ = writeln!(
            out,
            "{:<5} {:<16} {:<16} {what}",
            txt(&p["rule"]),
            txt(&p["set"]),
            txt(&p["policy"])
        );
    }
    out
}

fn counters(maps: &Maps, names: &Names, pin_dir: &Path) -> Result<Value, DataplaneError> {
    let mut rules = Vec::new();
    for id in names.rules.keys() {
        let c = maps.rule_counter(*id)?;
        rules.push(
            json!({ "rule": id, "set": names.set(*id), "packets": c.packets, "bytes": c.bytes }),
        );
    }
    let mut wans = Vec::new();
    for (slot, w) in &names.wans {
        let c = maps.wan_counter(*slot)?;
        let mut wan = json!({ "wan": w.name, "packets": c.packets, "bytes": c.bytes });
        // Pins of a steer without the WAN traffic counters have no such maps: left out.
        if let Ok(traffic) = read_pinned(pin_dir, *slot) {
            wan["traffic"] = traffic_json(&traffic);
        }
        wans.push(wan);
    }
    let mut paths = serde_json::Map::new();
    for (name, which) in [
        ("classified", path::CLASSIFIED),
        ("xdp_metadata", path::XDP_META),
        ("local", path::LOCAL),
        ("not_ip", path::NOT_IP),
        ("truncated", path::TRUNCATED),
    ] {
        let c = maps.path_counter(which)?;
        paths.insert(
            name.into(),
            json!({ "packets": c.packets, "bytes": c.bytes }),
        );
    }
    Ok(json!({ "rules": rules, "wans": wans, "paths": paths }))
}

/// What a WAN's own traffic said (passive liveness), per family: packets out that expect an
/// answer, packets in that are one.
fn traffic_json(t: &[TrafficSample; 2]) -> Value {
    let family = |s: &TrafficSample| json!({ "asked": s.asked, "answered": s.answered });
    json!({
        "ipv4": family(&t[Family::V4.index()]),
        "ipv6": family(&t[Family::V6.index()]),
    })
}

fn render_counters(v: &Value) -> String {
    let mut out = "counter                       packets          bytes\n".to_owned();
    for r in v["rules"].as_array().into_iter().flatten() {
        let label = format!("set {}", txt(&r["set"]));
        let _ = writeln!(
            out,
            "{label:<29} {:<16} {}",
            txt(&r["packets"]),
            txt(&r["bytes"])
        );
    }
    for w in v["wans"].as_array().into_iter().flatten() {
        let label = format!("wan {}", txt(&w["wan"]));
        let _ = writeln!(
            out,
            "{label:<29} {:<16} {}",
            txt(&w["packets"]),
            txt(&w["bytes"])
        );
    }
    if v["wans"].as_array().is_some_and(|w| !w.is_empty()) {
        let _ = writeln!(out, "{}", super::COUNTED_AS_CLASSIFIED);
    }
    for w in v["wans"].as_array().into_iter().flatten() {
        for family in ["ipv4", "ipv6"] {
            let t = &w["traffic"][family];
            if t.is_null() {
                continue;
            }
            let _ = writeln!(
                out,
                "{:<29} asked {:<10} answered {}",
                format!("wan {} traffic {family}", txt(&w["wan"])),
                txt(&t["asked"]),
                txt(&t["answered"])
            );
        }
    }
    for (name, c) in v["paths"].as_object().into_iter().flatten() {
        let _ = writeln!(
            out,
            "{:<29} {:<16} {}",
            format!("path {name}"),
            txt(&c["packets"]),
            txt(&c["bytes"])
        );
    }
    out
}

/// Every prefix with its set; `runtime` says which were added with `steer set` (and the
/// seconds they have left, `null` for none); without it the origin is "unknown".
fn sets(
    maps: &Maps,
    names: &Names,
    runtime: Option<&RuntimeSets>,
) -> Result<Value, DataplaneError> {
    let now = crate::dataplane::learned::boottime_secs();
    let mut rows = Vec::new();
    for map in PrefixMap::ALL {
        let mut entries = maps.prefixes(map)?;
        entries.sort();
        for (prefix, rule) in entries {
            let set = names.set(rule);
            let origin = match runtime.map(|r| r.get(&set, &prefix)) {
                None => json!("unknown"),
                Some(None) => json!("config"),
                Some(Some(deadline)) => json!({
                    "runtime": {
                        "expires_in_s": deadline.map(|at| crate::runtime_sets::seconds_left(at, now))
                    }
                }),
            };
            rows.push(json!({
                "prefix": prefix.to_string(), "match": map.direction().as_str(),
                "set": set, "rule": rule, "policy": names.policy(rule), "origin": origin,
            }));
        }
    }
    rows.extend(ordered_sets(maps, names)?);
    Ok(Value::Array(rows))
}

/// The prefixes of the sets with conditions (ordered rules), from the live condition bank:
/// they live in the conditions' tries, not in the range tables.
fn ordered_sets(maps: &Maps, names: &Names) -> Result<Vec<Value>, DataplaneError> {
    let cond = maps.ordered();
    let (bank_no, bank) = (cond.live_bank()?, cond.live()?);
    let used = bank.used[0] | bank.used[1];
    let mut rows = Vec::new();
    for i in (0..steer_common::cond::MAX_RULES as usize).filter(|i| used >> i & 1 == 1) {
        let rule = u32::from(bank.rule[i]);
        for side in [Direction::Src, Direction::Dst] {
            for prefix in cond.prefixes_of(bank_no as u8, side, 1 << i)? {
                rows.push(json!({
                    "prefix": prefix.to_string(), "match": side.as_str(),
                    "set": names.set(rule), "rule": rule, "policy": names.policy(rule),
                    "origin": "config", "ordered": i + 1,
                }));
            }
        }
    }
    Ok(rows)
}

fn render_sets(v: &Value) -> String {
    let mut out =
        "prefix                                      match  set              policy           origin\n"
            .to_owned();
    let rows = v.as_array().into_iter().flatten();
    let unknown = rows.clone().any(|r| r["origin"] == "unknown");
    for r in rows {
        let origin = match &r["origin"]["runtime"]["expires_in_s"] {
            _ if r["origin"] == "unknown" => "unknown".to_owned(),
            _ if r["ordered"].is_u64() => {
                format!("config (set with conditions #{})", r["ordered"])
            }
            _ if r["origin"].is_string() => "config".to_owned(),
            Value::Number(left) => match left.as_i64() {
                Some(left) if left < 0 => {
                    format!("runtime, {}", crate::runtime_sets::removal(left))
                }
                _ => format!("runtime, {left} s left"),
            },
            _ => "runtime".to_owned(),
        };
        let _ = writeln!(
            out,
            "{:<43} {:<6} {:<16} {:<16} {origin}",
            txt(&r["prefix"]),
            txt(&r["match"]),
            txt(&r["set"]),
            txt(&r["policy"])
        );
    }
    if unknown {
        out.push_str(
            "(origin unknown: no control socket or journal found, so runtime entries cannot be \
             told from configured ones; give --socket)\n",
        );
    }
    out
}

fn local(maps: &Maps) -> Result<Value, DataplaneError> {
    Ok(Value::Array(
        maps.locals()?
            .into_iter()
            .map(
                |(prefix, kind)| json!({ "prefix": prefix.to_string(), "reason": kind.describe() }),
            )
            .collect(),
    ))
}

fn render_local(v: &Value) -> String {
    let mut out = "local destination (never steered)            reason\n".to_owned();
    for r in v.as_array().into_iter().flatten() {
        let _ = writeln!(out, "{:<45} {}", txt(&r["prefix"]), txt(&r["reason"]));
    }
    out
}

#[cfg(test)]
mod tests {
    /// An expired runtime entry (no daemon ran to remove it) says so, not "0 s left".
    #[test]
    fn an_expired_runtime_entry_says_it_expired() {
        let rows = serde_json::json!([
            { "prefix": "8.8.8.0/24", "match": "dst", "set": "bypass", "policy": "p",
              "origin": { "runtime": { "expires_in_s": -8 } } },
            { "prefix": "9.9.9.0/24", "match": "dst", "set": "bypass", "policy": "p",
              "origin": { "runtime": { "expires_in_s": 5 } } },
        ]);
        let text = super::render_sets(&rows);
        assert!(
            text.contains("runtime, expired 8 s ago; removed when the daemon runs")
                && text.contains("runtime, 5 s left"),
            "{text}"
        );
    }

    /// The WAN rows count the classifier's verdicts, not where held connections go: said.
    #[test]
    fn the_wan_counters_say_they_count_the_classifiers_verdicts() {
        let v = serde_json::json!({ "rules": [], "wans": [{ "wan": "wan1", "packets": 3, "bytes": 180 }] });
        let text = super::render_counters(&v);
        assert!(
            text.contains("the packets the classifier gave each WAN; connections held to another WAN by steer's nftables table are counted where the classifier sent them"),
            "{text}"
        );
    }

    #[test]
    fn the_rules_table_lines_up_under_its_header() {
        let rows = serde_json::json!([
            { "rule": 0, "set": "default", "match": "default", "policy": "p" },
            { "rule": 12, "set": "bypass", "match": "dst", "policy": "p" },
        ]);
        let text = super::render_rules(&rows);
        let column = |line: &str| line.find('p').expect("policy column");
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[1].starts_with("0     default"), "{text}");
        assert!(lines[2].starts_with("12    bypass"), "{text}");
        assert_eq!(column(lines[1]), lines[0].find("policy").unwrap(), "{text}");
    }
}
