//! `--format table`: the functions, the P2P islands, and a verdict matrix that scales
//! (short names, `nvidia-smi topo -m` style classes, `--only` filters).

use std::fmt::Write;

use dmaspace_pci::{Bdf, Policy, Topology};

use crate::describe::{MATRIX_LEGEND, acs_str, count, cpu_str, matrix_cell, port_str};
use crate::error::CliError;
use crate::names::Names;

/// What the table shows and how it was asked for.
pub struct TableView<'a> {
    /// The topology.
    pub topo: &'a Topology,
    /// Names.
    pub names: &'a Names,
    /// The policy.
    pub policy: &'a Policy,
    /// Its allowlist's name.
    pub list_name: &'a str,
    /// The functions of the matrix, in BDF order.
    pub selected: &'a [Bdf],
    /// How they were selected (`--only` value), for the note above the matrix.
    pub only: &'a str,
}

/// Writes the whole table.
pub fn write_table(out: &mut impl Write, view: &TableView<'_>) -> Result<(), CliError> {
    let TableView {
        topo,
        names,
        policy,
        list_name,
        selected,
        only,
    } = *view;
    let n = topo.functions().count();
    writeln!(
        out,
        "{}, {}; CPU: {}; allowlist: {list_name}",
        count(n, "PCI function", "PCI functions"),
        count(topo.host_bridges().count(), "host bridge", "host bridges"),
        cpu_str(topo)
    )?;
    writeln!(out)?;
    let short_w = topo
        .functions()
        .map(|f| names.short(f.bdf).len())
        .max()
        .unwrap_or(4)
        .max(4);
    let long_w = topo
        .functions()
        .map(|f| names.long(f.bdf).len())
        .max()
        .unwrap_or(6)
        .clamp(6, 34);
    writeln!(
        out,
        "  {:<short_w$}  {:<13} {:<9}  {:<long_w$}  {:<15}  {:<7}  {:<13}  host bridge",
        "name", "BDF", "ID", "device", "type", "ACS", "upstream"
    )?;
    for f in topo.functions() {
        let up = topo
            .upstream_bridge(f.bdf)
            .ok()
            .flatten()
            .map_or_else(|| "-".to_string(), |b| b.to_string());
        let mut long: String = names.long(f.bdf).chars().take(long_w).collect();
        if names.long(f.bdf).chars().count() > long_w {
            long.pop();
            long.push('~');
        }
        write!(
            out,
            "  {:<short_w$}  {:<13} {:04x}:{:04x}  {:<long_w$}  {:<15}  {:<7}  {:<13}  {}",
            names.short(f.bdf),
            f.bdf.to_string(),
            f.vendor,
            f.device,
            long,
            port_str(f),
            acs_str(f.acs),
            up,
            f.host_bridge
        )?;
        if let Some(pf) = f.physfn {
            write!(out, "  (VF of {pf})")?;
        }
        writeln!(out)?;
    }

    writeln!(out)?;
    let islands = crate::describe::islands_in_tree_order(topo)?;
    if islands.is_empty() {
        writeln!(
            out,
            "P2P islands: none (no two devices reach each other by bus address)"
        )?;
    } else {
        writeln!(
            out,
            "P2P islands (members reach each other by bus address, below one switch or root port):"
        )?;
    }
    for (i, island) in islands.iter().enumerate() {
        write!(
            out,
            "  island {}: below {} ({}, {}):",
            i + 1,
            island.top,
            names.short(island.top),
            island.host_bridge
        )?;
        for d in island.devices(topo).filter(|d| d.physfn.is_none()) {
            write!(out, " {}", names.short(d.bdf))?;
            let vfs = island
                .devices(topo)
                .filter(|v| v.physfn == Some(d.bdf))
                .count();
            if vfs > 0 {
                write!(out, " (+{vfs} VFs)")?;
            }
        }
        writeln!(out)?;
    }

    writeln!(out)?;
    let hidden = n - selected.len();
    write!(
        out,
        "P2P matrix, row = provider, column = client: {} of {n} functions (--only {only})",
        selected.len()
    )?;
    if hidden > 0 && only == "dev" {
        write!(out, "; bridges and VFs left out, --only all shows them")?;
    }
    writeln!(out)?;
    let w = selected
        .iter()
        .map(|&b| names.short(b).len())
        .max()
        .unwrap_or(4)
        .max(5)
        + 1;
    write!(out, "  {:<short_w$} ", "")?;
    for &c in selected {
        write!(out, "{:>w$}", names.short(c))?;
    }
    writeln!(out)?;
    for &p in selected {
        write!(out, "  {:<short_w$} ", names.short(p))?;
        for &c in selected {
            let v = topo.verdict(p, c, policy)?;
            write!(out, "{:>w$}", matrix_cell(topo, &v))?;
        }
        writeln!(out)?;
    }
    writeln!(out)?;
    for line in MATRIX_LEGEND {
        writeln!(out, "{line}")?;
    }
    Ok(())
}
