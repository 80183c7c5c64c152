//! `--format json`, streamed: each record is written as soon as it is computed, so
//! memory stays bounded whatever the number of pairs (2,000 functions are 4 million
//! pairs, about 1 GB of JSON).
//!
//! The document keeps its shape: one object with `allowlist`, `cpu`, `devices`,
//! `host_bridges`, `islands` and `pairs` (in that order, the order `serde_json` sorts
//! them in), one record per line in each array. A device, island or host bridge
//! record goes through `serde_json`; a pair record, the only one there are n² of, is
//! written by hand: its strings are BDFs (`0000:03:00.0`) and the fixed words of
//! [`MapType::as_str`](dmaspace_pci::MapType::as_str) and
//! [`PathAcs::as_str`](dmaspace_pci::PathAcs::as_str), none of which needs escaping
//! (the tests parse what it writes).

use std::io::Write;

use dmaspace_pci::{Bdf, Policy, Topology, Verdict};
use serde_json::{Value, json};

use crate::describe::{HbStatus, acs_str, port_str};
use crate::error::CliError;
use crate::names::Names;

/// What the JSON document shows.
pub struct JsonView<'a> {
    /// The topology.
    pub topo: &'a Topology,
    /// Names.
    pub names: &'a Names,
    /// The policy.
    pub policy: &'a Policy,
    /// The functions of the devices and the pairs, in BDF order.
    pub selected: &'a [Bdf],
    /// The allowlist's name.
    pub list_name: &'a str,
}

/// Writes `"key": [` and the records, one a line, and `]`.
fn write_array(
    out: &mut impl Write,
    key: &str,
    records: impl IntoIterator<Item = Value>,
) -> Result<(), CliError> {
    write!(out, "  \"{key}\": [")?;
    let mut first = true;
    for r in records {
        out.write_all(if first { b"\n    " } else { b",\n    " })?;
        serde_json::to_writer(&mut *out, &r).map_err(|e| CliError::Write(e.into()))?;
        first = false;
    }
    out.write_all(if first { b"]" } else { b"\n  ]" })?;
    Ok(())
}

/// Writes an optional BDF as a JSON string or `null`.
fn opt_bdf(out: &mut impl Write, b: Option<Bdf>) -> std::io::Result<()> {
    match b {
        Some(b) => write!(out, "\"{b}\""),
        None => out.write_all(b"null"),
    }
}

/// Writes one pair's record.
fn write_pair(out: &mut impl Write, v: &Verdict) -> std::io::Result<()> {
    write!(
        out,
        "{{\"provider\":\"{}\",\"client\":\"{}\",\"map_type\":\"{}\",\"distance\":{},\"hops\":{},\"acs\":\"{}\",\"common_upstream\":",
        v.provider,
        v.client,
        v.map_type.as_str(),
        v.kernel_distance(),
        v.distance,
        v.acs.as_str()
    )?;
    opt_bdf(out, v.common_upstream)?;
    out.write_all(b",\"acs_redirect_at\":")?;
    opt_bdf(out, v.acs_redirect)?;
    out.write_all(b",\"unknown_at\":")?;
    opt_bdf(out, v.unknown_at)?;
    out.write_all(b"}")
}

/// Writes the document to `out` (which should be buffered), pair by pair.
pub fn write_json(out: &mut impl Write, view: &JsonView<'_>) -> Result<(), CliError> {
    let JsonView {
        topo,
        names,
        policy,
        selected,
        list_name,
    } = *view;
    let cpu = topo.cpu();
    writeln!(out, "{{")?;
    writeln!(out, "  \"allowlist\": {},", json!(list_name))?;
    let cpu = json!({
        "x86": cpu.x86,
        "vendor": format!("{:?}", cpu.vendor),
        "family": cpu.family,
        "supports_p2pdma": cpu.supports_p2pdma(),
    });
    writeln!(out, "  \"cpu\": {cpu},")?;

    let mut devices = Vec::with_capacity(selected.len());
    for &b in selected {
        let Some(f) = topo.function(b) else { continue };
        devices.push(json!({
            "bdf": f.bdf.to_string(),
            "name": names.short(b),
            "device_name": names.long(b),
            "class_name": names.class(b).word(),
            "vendor": format!("0x{:04x}", f.vendor),
            "device": format!("0x{:04x}", f.device),
            "class": format!("0x{:06x}", f.class),
            "port_type": port_str(f),
            "acs": acs_str(f.acs),
            "acs_redirect": f.acs.redirects(),
            "upstream_bridge": topo.upstream_bridge(f.bdf)?.map(|b| b.to_string()),
            "host_bridge": f.host_bridge.to_string(),
            "physfn": f.physfn.map(|b| b.to_string()),
        }));
    }
    write_array(out, "devices", devices)?;
    writeln!(out, ",")?;

    let host_bridges = topo.host_bridges().map(|h| {
        json!({
            "id": h.id.to_string(),
            "below": h.below.map(|b| b.to_string()),
            "allowlist": HbStatus::of(topo, h.id, policy).as_str(),
        })
    });
    write_array(out, "host_bridges", host_bridges)?;
    writeln!(out, ",")?;

    let islands = topo.islands()?;
    let islands = islands.iter().map(|i| {
        json!({
            "top": i.top.to_string(),
            "host_bridge": i.host_bridge.to_string(),
            "members": i.members.iter().map(ToString::to_string).collect::<Vec<_>>(),
        })
    });
    write_array(out, "islands", islands)?;
    writeln!(out, ",")?;

    out.write_all(b"  \"pairs\": [")?;
    let mut first = true;
    for &p in selected {
        for &c in selected {
            let v = topo.verdict(p, c, policy)?;
            out.write_all(if first { b"\n    " } else { b",\n    " })?;
            write_pair(out, &v)?;
            first = false;
        }
    }
    out.write_all(if first { b"]\n}\n" } else { b"\n  ]\n}\n" })?;
    Ok(())
}
