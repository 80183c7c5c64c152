//! `--format dot`: Graphviz text. One cluster per host bridge, one shaded cluster per
//! P2P island inside it, the tree's edges, and no all-pairs edges: whether two functions
//! reach each other by bus address is whether they share an island.

use std::fmt::Write;

use dmaspace_pci::{AcsState, HostBridgeId, Island, Policy, Topology};

use crate::describe::{HbStatus, acs_str, cpu_str, port_str};
use crate::error::CliError;
use crate::names::Names;

/// Island fill colours (also the picture's).
pub const ISLAND_FILLS: [&str; 8] = [
    "#d5ecd4", "#d6e6f5", "#f7e3c6", "#e6d8f0", "#f4d7e0", "#d2eeec", "#ecebc9", "#e2e2e2",
];

/// Island outline colours, a darker shade of each fill.
pub const ISLAND_EDGES: [&str; 8] = [
    "#6fae6c", "#6e9fcf", "#d4a052", "#a585c0", "#cc8099", "#5fb3ad", "#b3b05a", "#9a9a9a",
];

/// A Graphviz-safe cluster/node id.
fn id(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

fn esc(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

fn write_node(
    out: &mut impl Write,
    topo: &Topology,
    names: &Names,
    bdf: dmaspace_pci::Bdf,
    indent: &str,
) -> Result<(), CliError> {
    let Some(f) = topo.function(bdf) else {
        return Ok(());
    };
    let (color, pen, style) = match f.acs {
        AcsState::Control(c) if c.redirects() => ("red", 2.5, "solid"),
        AcsState::Unknown => ("orange", 1.5, "dashed"),
        _ => ("black", 1.0, "solid"),
    };
    let acs = match f.acs {
        AcsState::Control(c) if c.redirects() => format!("\\nACS redirect {}", acs_str(f.acs)),
        AcsState::Unknown => "\\nACS unknown".to_string(),
        AcsState::Control(_) | AcsState::Absent if f.is_bridge() => {
            format!("\\nACS {}", acs_str(f.acs))
        }
        _ => String::new(),
    };
    writeln!(
        out,
        "{indent}\"{bdf}\" [label=\"{} {bdf}\\n{}\\n{}{acs}\", color={color}, penwidth={pen}, style=\"{style},filled\", fillcolor=white];",
        esc(names.short(bdf)),
        esc(names.long(bdf)),
        port_str(f),
    )?;
    Ok(())
}

/// Writes the DOT text.
pub fn write_dot(
    out: &mut impl Write,
    topo: &Topology,
    names: &Names,
    policy: &Policy,
    list_name: &str,
) -> Result<(), CliError> {
    let islands = crate::describe::islands_in_tree_order(topo)?;
    writeln!(out, "digraph pci {{")?;
    writeln!(out, "  rankdir=LR;")?;
    writeln!(
        out,
        "  label=\"PCI tree and P2P islands. CPU: {}; allowlist: {list_name}. Shaded: P2P island (bus_addr between members); red: ACS redirect; elsewhere thru_host_bridge or not_supported (dmaspace explain)\";",
        esc(&cpu_str(topo))
    )?;
    writeln!(out, "  labelloc=t;")?;
    writeln!(
        out,
        "  node [shape=box, fontname=\"DejaVu Sans Mono\", fontsize=10];"
    )?;
    let island_of = |b| islands.iter().position(|i: &Island| i.contains(b));
    let hbs: Vec<HostBridgeId> = topo.host_bridges().map(|h| h.id).collect();
    for hb in &hbs {
        let status = HbStatus::of(topo, *hb, policy);
        writeln!(out, "  subgraph cluster_{} {{", id(&hb.to_string()))?;
        writeln!(out, "    label=\"host bridge {hb}: {}\";", status.as_str())?;
        writeln!(out, "    style=rounded; color=gray40;")?;
        writeln!(out, "    \"{hb}\" [shape=ellipse, label=\"{hb}\"];")?;
        for (k, island) in islands.iter().enumerate() {
            if island.host_bridge != *hb {
                continue;
            }
            writeln!(out, "    subgraph cluster_island_{} {{", k + 1)?;
            writeln!(
                out,
                "      label=\"P2P island {}: bus_addr between members\";",
                k + 1
            )?;
            writeln!(
                out,
                "      style=filled; color=\"{}\"; fillcolor=\"{}\";",
                ISLAND_FILLS[k % ISLAND_FILLS.len()],
                ISLAND_FILLS[k % ISLAND_FILLS.len()]
            )?;
            for &m in &island.members {
                write_node(out, topo, names, m, "      ")?;
            }
            writeln!(out, "    }}")?;
        }
        for f in topo
            .functions()
            .filter(|f| f.host_bridge == *hb && island_of(f.bdf).is_none())
        {
            write_node(out, topo, names, f.bdf, "    ")?;
        }
        writeln!(out, "  }}")?;
    }
    for h in topo.host_bridges() {
        if let Some(below) = h.below {
            writeln!(out, "  \"{below}\" -> \"{}\";", h.id)?;
        }
    }
    for f in topo.functions() {
        match (topo.upstream_bridge(f.bdf)?, f.physfn) {
            (_, Some(pf)) => {
                writeln!(
                    out,
                    "  \"{pf}\" -> \"{}\" [style=dashed, label=\"VF\"];",
                    f.bdf
                )?;
            }
            (Some(p), None) => writeln!(out, "  \"{p}\" -> \"{}\";", f.bdf)?,
            (None, None) => writeln!(out, "  \"{}\" -> \"{}\";", f.host_bridge, f.bdf)?,
        }
    }
    writeln!(out, "}}")?;
    Ok(())
}
