//! `dmaspace topology`: the verdict of every pair, as a table, JSON, DOT, SVG or PNG.

use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::path::PathBuf;

use clap::ValueEnum;
use dmaspace_pci::{Bdf, Policy, Topology};
use serde_json::{Value, json};

use crate::describe::{HbStatus, acs_str, port_str};
use crate::error::CliError;
use crate::names::Names;
use crate::source::Source;
use crate::{dot, picture, table};

/// Arguments of `dmaspace topology`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    source: Source,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// Functions of the matrix (table) or of the pairs (json): classes (gpu, nic, nvme,
    /// disk, accel, vga, bridge, vf, dev, all), short names (gpu0) or BDFs,
    /// comma-separated. Default: `dev` for the table (devices, no bridges or VFs), `all`
    /// for JSON.
    #[arg(long, value_name = "LIST")]
    only: Option<String>,
    /// Write to this file instead of stdout (for svg and png).
    #[arg(long, short, value_name = "FILE")]
    output: Option<PathBuf>,
    /// PNG scale (1 = one pixel per SVG unit).
    #[arg(long, default_value_t = 1.0)]
    scale: f32,
}

/// `--format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    /// The functions, the P2P islands and a matrix like `nvidia-smi topo -m`.
    Table,
    /// One JSON object: `{"devices": [...], "pairs": [...], "islands": [...]}`.
    Json,
    /// Graphviz: a cluster per host bridge and per P2P island.
    Dot,
    /// A picture of the tree with its P2P islands.
    Svg,
    /// The picture as PNG (rendered in-process).
    Png,
}

/// Runs the command.
pub fn run(args: &Args) -> Result<(), CliError> {
    if !(args.scale > 0.0 && args.scale <= 8.0) {
        return Err(CliError::Argument(format!(
            "--scale {} is out of range (0, 8]",
            args.scale
        )));
    }
    let loaded = args.source.load()?;
    let (topo, names, policy) = (&loaded.topo, &loaded.names, &loaded.policy);
    let unknown = topo
        .functions()
        .filter(|f| f.acs == dmaspace_pci::AcsState::Unknown)
        .count();
    if unknown > 0 {
        eprintln!(
            "dmaspace: warning: ACS of {unknown} function(s) could not be read (config space truncated; \
             run as root for the full picture); pairs depending on them are reported \
             not_supported with acs \"unknown\""
        );
    }
    let bytes: Vec<u8> = match args.format {
        Format::Table => {
            let only = args.only.as_deref().unwrap_or("dev");
            let selected = names.select(topo, only)?;
            let mut s = String::new();
            table::write_table(
                &mut s,
                &table::TableView {
                    topo,
                    names,
                    policy,
                    list_name: loaded.list_name,
                    selected: &selected,
                    only,
                },
            )?;
            s.into_bytes()
        }
        Format::Json => {
            let selected = names.select(topo, args.only.as_deref().unwrap_or("all"))?;
            json_out(topo, names, policy, &selected, loaded.list_name)?.into_bytes()
        }
        Format::Dot => {
            let mut s = String::new();
            dot::write_dot(&mut s, topo, names, policy, loaded.list_name)?;
            s.into_bytes()
        }
        Format::Svg => {
            picture::svg(topo, names, policy, loaded.list_name, &loaded.origin)?.into_bytes()
        }
        Format::Png => picture::png(
            &picture::svg(topo, names, policy, loaded.list_name, &loaded.origin)?,
            args.scale,
        )?,
    };
    match &args.output {
        Some(path) => fs::write(path, &bytes).map_err(|e| {
            CliError::Write(std::io::Error::new(
                e.kind(),
                format!("{}: {e}", path.display()),
            ))
        }),
        None => {
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(&bytes)?;
            stdout.flush()?;
            Ok(())
        }
    }
}

fn json_out(
    topo: &Topology,
    names: &Names,
    policy: &Policy,
    selected: &[Bdf],
    list: &str,
) -> Result<String, CliError> {
    let mut devices = Vec::new();
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
    let mut pairs = Vec::with_capacity(selected.len() * selected.len());
    for &p in selected {
        for &c in selected {
            let v = topo.verdict(p, c, policy)?;
            pairs.push(json!({
                "provider": v.provider.to_string(),
                "client": v.client.to_string(),
                "map_type": v.map_type.as_str(),
                "distance": v.kernel_distance(),
                "hops": v.distance,
                "acs": v.acs.as_str(),
                "common_upstream": v.common_upstream.map(|b| b.to_string()),
                "acs_redirect_at": v.acs_redirect.map(|b| b.to_string()),
                "unknown_at": v.unknown_at.map(|b| b.to_string()),
            }));
        }
    }
    let islands: Vec<Value> = topo
        .islands()?
        .iter()
        .map(|i| {
            json!({
                "top": i.top.to_string(),
                "host_bridge": i.host_bridge.to_string(),
                "members": i.members.iter().map(ToString::to_string).collect::<Vec<_>>(),
            })
        })
        .collect();
    let host_bridges: Vec<Value> = topo
        .host_bridges()
        .map(|h| {
            json!({
                "id": h.id.to_string(),
                "below": h.below.map(|b| b.to_string()),
                "allowlist": HbStatus::of(topo, h.id, policy).as_str(),
            })
        })
        .collect();
    let cpu = topo.cpu();
    let doc = json!({
        "devices": devices,
        "pairs": pairs,
        "islands": islands,
        "host_bridges": host_bridges,
        "cpu": {
            "x86": cpu.x86,
            "vendor": format!("{:?}", cpu.vendor),
            "family": cpu.family,
            "supports_p2pdma": cpu.supports_p2pdma(),
        },
        "allowlist": list,
    });
    let mut s = String::new();
    writeln!(
        s,
        "{}",
        serde_json::to_string_pretty(&doc).map_err(|_| CliError::Format(std::fmt::Error))?
    )?;
    Ok(s)
}
