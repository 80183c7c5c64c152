//! `dmaspace topology`.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;

use clap::ValueEnum;
use dmaspace::topology::{
    AcsState, MapType, PathAcs, PciFunction, PcieKind, Policy, Topology, TopologyError, Verdict,
    sysfs,
};
use serde_json::{Value, json};

use crate::error::CliError;

/// Arguments of `dmaspace topology`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Root of the tree to read (`ROOT/sys/...`, `ROOT/proc/cpuinfo`); `/` is this machine.
    #[arg(long, value_name = "ROOT", default_value = "/")]
    sysfs: PathBuf,
    /// Host-bridge allowlist to apply.
    #[arg(long, value_enum, default_value_t = AllowlistArg::Current)]
    allowlist: AllowlistArg,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

/// `--allowlist`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum AllowlistArg {
    /// The list of Linux 6.12.
    #[value(name = "linux-6.12")]
    Linux612,
    /// Today's list.
    Current,
}

/// `--format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    /// A matrix like `nvidia-smi topo -m`.
    Table,
    /// One JSON object: `{"devices": [...], "pairs": [...]}`.
    Json,
    /// Graphviz.
    Dot,
}

/// Runs the command; the error is one line for stderr.
pub fn run(args: &Args) -> Result<(), CliError> {
    let topo = sysfs::load(&args.sysfs)?;
    let (policy, list_name) = match args.allowlist {
        AllowlistArg::Linux612 => (Policy::linux_6_12(), "linux-6.12"),
        AllowlistArg::Current => (Policy::default(), "current"),
    };
    let fns: Vec<&PciFunction> = topo.functions().collect();
    let verdicts = all_verdicts(&topo, &fns, &policy)?;
    let unknown: Vec<String> = fns
        .iter()
        .filter(|f| f.acs == AcsState::Unknown)
        .map(|f| f.bdf.to_string())
        .collect();
    if !unknown.is_empty() {
        eprintln!(
            "dmaspace: warning: ACS of {} function(s) could not be read (config space truncated; \
             run as root for the full picture); pairs depending on them are reported \
             not_supported with acs \"unknown\"",
            unknown.len()
        );
    }
    let out = match args.format {
        Format::Json => json_out(&topo, &fns, &verdicts, list_name)?,
        Format::Table => table_out(&topo, &fns, &verdicts, list_name)?,
        Format::Dot => dot_out(&topo, &fns, &verdicts)?,
    };
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(out.as_bytes())?;
    stdout.flush()?;
    Ok(())
}

/// The verdict of every ordered pair of `fns`, row-major (provider, client).
pub(crate) fn all_verdicts(
    topo: &Topology,
    fns: &[&PciFunction],
    policy: &Policy,
) -> Result<Vec<Verdict>, TopologyError> {
    let mut verdicts = Vec::with_capacity(fns.len() * fns.len());
    for p in fns {
        for c in fns {
            verdicts.push(topo.verdict(p.bdf, c.bdf, policy)?);
        }
    }
    Ok(verdicts)
}

fn port_str(f: &PciFunction) -> &'static str {
    match f.pcie {
        PcieKind::NotPcie => "pci",
        PcieKind::Pcie(t) => t.as_str(),
        PcieKind::Unknown => "unknown",
    }
}

fn acs_str(acs: AcsState) -> String {
    match acs {
        AcsState::Absent => "absent".into(),
        AcsState::Control(c) => format!("0x{:04x}", c.bits()),
        AcsState::Unknown => "unknown".into(),
    }
}

fn cpu_str(topo: &Topology) -> String {
    let cpu = topo.cpu();
    let path = if cpu.supports_p2pdma() {
        "AMD Zen or later: host-bridge P2P allowed"
    } else {
        "host-bridge P2P only via the allowlist"
    };
    if cpu.x86 {
        format!("x86 {:?} family 0x{:x} ({path})", cpu.vendor, cpu.family)
    } else {
        format!("not x86 ({path})")
    }
}

fn json_out(
    topo: &Topology,
    fns: &[&PciFunction],
    verdicts: &[Verdict],
    list: &str,
) -> Result<String, CliError> {
    let devices: Vec<Value> = fns
        .iter()
        .map(|f| {
            json!({
                "bdf": f.bdf.to_string(),
                "vendor": format!("0x{:04x}", f.vendor),
                "device": format!("0x{:04x}", f.device),
                "class": format!("0x{:06x}", f.class),
                "port_type": port_str(f),
                "acs": acs_str(f.acs),
                "acs_redirect": f.acs.redirects(),
                "upstream_bridge": topo.upstream_bridge(f.bdf).ok().flatten().map(|b| b.to_string()),
                "host_bridge": f.host_bridge.to_string(),
                "physfn": f.physfn.map(|b| b.to_string()),
            })
        })
        .collect();
    let pairs: Vec<Value> = verdicts
        .iter()
        .map(|v| {
            json!({
                "provider": v.provider.to_string(),
                "client": v.client.to_string(),
                "map_type": v.map_type.as_str(),
                "distance": v.kernel_distance(),
                "hops": v.distance,
                "acs": v.acs.as_str(),
                "common_upstream": v.common_upstream.map(|b| b.to_string()),
                "acs_redirect_at": v.acs_redirect.map(|b| b.to_string()),
                "unknown_at": v.unknown_at.map(|b| b.to_string()),
            })
        })
        .collect();
    let cpu = topo.cpu();
    let doc = json!({
        "devices": devices,
        "pairs": pairs,
        "cpu": {
            "x86": cpu.x86,
            "vendor": format!("{:?}", cpu.vendor),
            "family": cpu.family,
            "supports_p2pdma": cpu.supports_p2pdma(),
        },
        "allowlist": list,
    });
    let mut s =
        serde_json::to_string_pretty(&doc).map_err(|_| CliError::Format(std::fmt::Error))?;
    s.push('\n');
    Ok(s)
}

fn cell(v: &Verdict) -> String {
    let mut s = match v.map_type {
        MapType::BusAddr => format!("BA{}", v.distance),
        MapType::ThruHostBridge => format!("HB{}", v.distance),
        MapType::NotSupported => "NS".to_string(),
    };
    if v.acs == PathAcs::Unknown {
        s.push('?');
    }
    s
}

pub(crate) fn table_out(
    topo: &Topology,
    fns: &[&PciFunction],
    verdicts: &[Verdict],
    list: &str,
) -> Result<String, std::fmt::Error> {
    let n = fns.len();
    let mut s = String::new();
    writeln!(
        s,
        "{} PCI functions, {} host bridge(s); CPU: {}; allowlist: {list}",
        n,
        topo.host_bridges().count(),
        cpu_str(topo)
    )?;
    writeln!(s)?;
    writeln!(
        s,
        "  {:>3}  {:<13} {:<9}  {:<6}  {:<15}  {:<7}  {:<13}  host bridge",
        "#", "BDF", "ID", "class", "type", "ACS", "upstream"
    )?;
    for (i, f) in fns.iter().enumerate() {
        let up = topo
            .upstream_bridge(f.bdf)
            .ok()
            .flatten()
            .map_or_else(|| "-".to_string(), |b| b.to_string());
        let mut hb = f.host_bridge.to_string();
        if let Some(pf) = f.physfn {
            write!(hb, "  (VF of {pf})")?;
        }
        writeln!(
            s,
            "  {:>3}  {:<13} {:04x}:{:04x}  {:06x}  {:<15}  {:<7}  {:<13}  {}",
            i,
            f.bdf.to_string(),
            f.vendor,
            f.device,
            f.class,
            port_str(f),
            acs_str(f.acs),
            up,
            hb
        )?;
    }
    writeln!(s)?;
    writeln!(s, "P2P matrix (row = provider, column = client):")?;
    let w = 5;
    write!(s, "  {:>3} ", "")?;
    for j in 0..n {
        write!(s, "{:>w$}", j)?;
    }
    writeln!(s)?;
    for i in 0..n {
        write!(s, "  {:>3} ", i)?;
        for j in 0..n {
            write!(s, "{:>w$}", cell(&verdicts[i * n + j]))?;
        }
        writeln!(s)?;
    }
    writeln!(s)?;
    writeln!(s, "Legend:")?;
    writeln!(
        s,
        "  BAn  bus_addr, distance n: P2P through a switch, with PCI bus addresses"
    )?;
    writeln!(
        s,
        "  HBn  thru_host_bridge, distance n: P2P through the root complex, mapped like MMIO"
    )?;
    writeln!(s, "  NS   not_supported: pci_p2pdma_distance() returns -1")?;
    writeln!(
        s,
        "  ?    ACS unknown (config space unreadable): never bus_addr, reported NS"
    )?;
    writeln!(
        s,
        "  distance = hops to the common upstream bridge, both sides summed (as Linux counts)"
    )?;
    Ok(s)
}

fn dot_out(
    topo: &Topology,
    fns: &[&PciFunction],
    verdicts: &[Verdict],
) -> Result<String, std::fmt::Error> {
    let mut s = String::new();
    writeln!(s, "digraph pci {{")?;
    writeln!(s, "  rankdir=TB;")?;
    writeln!(s, "  node [shape=box, fontname=\"monospace\"];")?;
    for hb in topo.host_bridges() {
        writeln!(s, "  \"{}\" [shape=ellipse];", hb.id)?;
        if let Some(below) = hb.below {
            writeln!(s, "  \"{below}\" -> \"{}\";", hb.id)?;
        }
    }
    for f in fns {
        writeln!(
            s,
            "  \"{}\" [label=\"{}\\n{:04x}:{:04x} {}\\nACS {}\"];",
            f.bdf,
            f.bdf,
            f.vendor,
            f.device,
            port_str(f),
            acs_str(f.acs)
        )?;
        match (f.parent, f.physfn) {
            (_, Some(pf)) => {
                writeln!(
                    s,
                    "  \"{pf}\" -> \"{}\" [style=dashed, label=\"VF\"];",
                    f.bdf
                )?;
            }
            (Some(p), None) => {
                writeln!(s, "  \"{p}\" -> \"{}\";", f.bdf)?;
            }
            (None, None) => {
                writeln!(s, "  \"{}\" -> \"{}\";", f.host_bridge, f.bdf)?;
            }
        }
    }
    writeln!(
        s,
        "  // P2P routes (verdicts are symmetric: one edge per unordered pair)"
    )?;
    writeln!(s, "  edge [dir=none, constraint=false];")?;
    for v in verdicts {
        if v.provider >= v.client {
            continue;
        }
        let (color, style) = match (v.map_type, v.acs) {
            (_, PathAcs::Unknown) => ("gray", "dotted"),
            (MapType::BusAddr, _) => ("darkgreen", "bold"),
            (MapType::ThruHostBridge, _) => ("orange", "solid"),
            (MapType::NotSupported, _) => ("red", "dashed"),
        };
        writeln!(
            s,
            "  \"{}\" -> \"{}\" [color={color}, style={style}, label=\"{}\"];",
            v.provider,
            v.client,
            cell(v)
        )?;
    }
    writeln!(s, "}}")?;
    Ok(s)
}
