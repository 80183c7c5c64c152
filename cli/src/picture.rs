//! `--format svg|png`: the PCI tree drawn as `lstopo` draws it (left to right: host
//! bridges, root ports, switches, devices; a function's children stacked to its right),
//! with each P2P island as one shaded box, ACS redirect marked, VFs as chips inside their
//! PF, and a legend. The SVG is written here; `resvg` turns it into a PNG with an
//! embedded font, so nothing outside the binary is needed.

use std::collections::BTreeMap;
use std::fmt::Write;

use dmaspace_pci::{AcsState, Bdf, HostBridgeId, Island, Policy, Topology};

use crate::describe::{HbStatus, acs_str, count, cpu_name, islands_in_tree_order};
use crate::dot::{ISLAND_EDGES, ISLAND_FILLS};
use crate::error::CliError;
use crate::names::Names;

/// DejaVu Sans Mono (Bitstream Vera license, `assets/DejaVuSansMono.LICENSE`).
const FONT: &[u8] = include_bytes!("../assets/DejaVuSansMono.ttf");
const FONT_FAMILY: &str = "DejaVu Sans Mono";
/// Advance width of DejaVu Sans Mono, in em (1233/2048).
const ADVANCE: f64 = 0.602;

const SIZE: f64 = 12.0;
const SMALL: f64 = 10.0;
const LINE: f64 = 15.0;
const PAD_X: f64 = 7.0;
const PAD_Y: f64 = 5.0;
const COL_GAP: f64 = 40.0;
const ROW_GAP: f64 = 10.0;
const GROUP_GAP: f64 = 26.0;
const MARGIN: f64 = 20.0;
const CHIP_H: f64 = 15.0;
const CHIP_GAP: f64 = 4.0;
const LABEL_W: f64 = 150.0;
const MAX_NAME: usize = 30;

fn text_w(s: &str, size: f64) -> f64 {
    // The font is monospace: width is characters times the advance.
    s.chars().count() as f64 * size * ADVANCE
}

fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut t: String = s.chars().take(max - 1).collect();
    t.push('~');
    t
}

/// One line of text in a box: its text, its CSS class.
struct Line {
    text: String,
    class: &'static str,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Item {
    Host(HostBridgeId),
    Func(Bdf),
}

struct Node {
    item: Item,
    depth: usize,
    children: Vec<usize>,
    vfs: Vec<Bdf>,
    lines: Vec<Line>,
    x: f64,
    y: f64,
    h: f64,
}

struct Layout<'a> {
    topo: &'a Topology,
    names: &'a Names,
    policy: &'a Policy,
    nodes: Vec<Node>,
    col_w: Vec<f64>,
    chip_w: f64,
}

impl<'a> Layout<'a> {
    fn host_lines(&self, hb: HostBridgeId) -> Vec<Line> {
        let status = HbStatus::of(self.topo, hb, self.policy);
        let dev = self.topo.host_bridge_dev(hb).0;
        let mut lines = vec![Line {
            text: format!("host bridge {hb}"),
            class: "t1",
        }];
        if let Some(d) = dev {
            lines.push(Line {
                text: clip(self.names.long(d.bdf), MAX_NAME),
                class: "t2",
            });
        }
        lines.push(Line {
            text: status.as_str().to_string(),
            class: match status {
                HbStatus::Allowed => "ok",
                HbStatus::SameOnly => "warn",
                HbStatus::NotListed | HbStatus::NoDevice => "bad",
            },
        });
        lines
    }

    fn func_lines(&self, bdf: Bdf) -> Vec<Line> {
        let mut lines = vec![
            Line {
                text: format!("{}  {bdf}", self.names.short(bdf)),
                class: "t1",
            },
            Line {
                text: clip(self.names.long(bdf), MAX_NAME),
                class: "t2",
            },
        ];
        if let Some(f) = self.topo.function(bdf) {
            match f.acs {
                AcsState::Control(c) if c.redirects() => lines.push(Line {
                    text: format!("ACS redirect {}", acs_str(f.acs)),
                    class: "bad",
                }),
                AcsState::Unknown => lines.push(Line {
                    text: "ACS unknown".into(),
                    class: "warn",
                }),
                AcsState::Control(_) => lines.push(Line {
                    text: format!("ACS {} no redirect", acs_str(f.acs)),
                    class: "t2",
                }),
                AcsState::Absent => {}
            }
        }
        lines
    }

    fn add_host(&mut self, hb: HostBridgeId, depth: usize) -> Result<usize, CliError> {
        let lines = self.host_lines(hb);
        let idx = self.push(Item::Host(hb), depth, lines);
        let roots: Vec<Bdf> = self
            .topo
            .functions()
            .filter(|f| f.host_bridge == hb && f.physfn.is_none())
            .map(|f| f.bdf)
            .collect();
        for b in roots {
            if self.topo.upstream_bridge(b)?.is_none() {
                let c = self.add_func(b, depth + 1)?;
                self.nodes[idx].children.push(c);
            }
        }
        Ok(idx)
    }

    fn add_func(&mut self, bdf: Bdf, depth: usize) -> Result<usize, CliError> {
        let lines = self.func_lines(bdf);
        let idx = self.push(Item::Func(bdf), depth, lines);
        let topo = self.topo;
        self.nodes[idx].vfs = topo
            .functions()
            .filter(|f| f.physfn == Some(bdf))
            .map(|f| f.bdf)
            .collect();
        let mut kids = Vec::new();
        for f in topo.functions().filter(|f| f.physfn.is_none()) {
            if topo.upstream_bridge(f.bdf)? == Some(bdf) {
                kids.push(f.bdf);
            }
        }
        for k in kids {
            let c = self.add_func(k, depth + 1)?;
            self.nodes[idx].children.push(c);
        }
        let nested: Vec<HostBridgeId> = topo
            .host_bridges()
            .filter(|h| h.below == Some(bdf))
            .map(|h| h.id)
            .collect();
        for hb in nested {
            let c = self.add_host(hb, depth + 1)?;
            self.nodes[idx].children.push(c);
        }
        Ok(idx)
    }

    fn push(&mut self, item: Item, depth: usize, lines: Vec<Line>) -> usize {
        self.nodes.push(Node {
            item,
            depth,
            children: Vec::new(),
            vfs: Vec::new(),
            lines,
            x: 0.0,
            y: 0.0,
            h: 0.0,
        });
        self.nodes.len() - 1
    }

    /// A VF chip says `v3 1a:00.4`: the VF's index and its bus address (the PF's short
    /// name is on the box around it; the full BDF is in the chip's title).
    fn chip_text(&self, vf: Bdf) -> String {
        let short = self.names.short(vf);
        let index = short.rfind('v').map_or(short, |i| &short[i..]);
        format!("{index} {:02x}:{:02x}.{}", vf.bus, vf.device, vf.function)
    }

    fn chips_per_row(&self, depth: usize) -> usize {
        let w = self.col_w[depth] - 2.0 * PAD_X + CHIP_GAP;
        ((w / (self.chip_w + CHIP_GAP) + 1e-6).floor() as usize).max(1)
    }

    /// The bottom of node `i`'s subtree.
    fn subtree_bottom(&self, i: usize) -> f64 {
        let n = &self.nodes[i];
        n.children
            .iter()
            .map(|&c| self.subtree_bottom(c))
            .fold(n.y + n.h, f64::max)
    }

    /// Node `i` and every node below it.
    fn subtree(&self, i: usize, out: &mut Vec<usize>) {
        out.push(i);
        for &c in &self.nodes[i].children {
            self.subtree(c, out);
        }
    }

    /// Places node `i` with its top at `y`; returns the bottom of its subtree.
    fn place(&mut self, i: usize, y: f64) -> f64 {
        let depth = self.nodes[i].depth;
        let n_vf = self.nodes[i].vfs.len();
        let rows = n_vf.div_ceil(self.chips_per_row(depth));
        let mut h = self.nodes[i].lines.len() as f64 * LINE + 2.0 * PAD_Y;
        if rows > 0 {
            h += rows as f64 * (CHIP_H + CHIP_GAP) + 2.0;
        }
        self.nodes[i].y = y;
        self.nodes[i].h = h;
        self.nodes[i].x = MARGIN + self.col_w[..depth].iter().map(|w| w + COL_GAP).sum::<f64>();
        let mut bottom = y + h;
        let mut cy = y;
        let children = self.nodes[i].children.clone();
        for c in children {
            let b = self.place(c, cy);
            bottom = bottom.max(b);
            cy = b + ROW_GAP;
        }
        bottom
    }
}

/// Renders the SVG.
pub fn svg(
    topo: &Topology,
    names: &Names,
    policy: &Policy,
    list_name: &str,
    origin: &str,
) -> Result<String, CliError> {
    let mut lay = Layout {
        topo,
        names,
        policy,
        nodes: Vec::new(),
        col_w: Vec::new(),
        chip_w: 0.0,
    };
    let mut roots = Vec::new();
    for hb in topo.host_bridges().filter(|h| h.below.is_none()) {
        roots.push(lay.add_host(hb.id, 0)?);
    }
    // Column widths: the widest box of each depth.
    let depth_n = lay.nodes.iter().map(|n| n.depth + 1).max().unwrap_or(1);
    lay.col_w = vec![160.0; depth_n];
    for n in &lay.nodes {
        let w = n
            .lines
            .iter()
            .map(|l| text_w(&l.text, SIZE))
            .fold(0.0, f64::max)
            + 2.0 * PAD_X;
        lay.col_w[n.depth] = lay.col_w[n.depth].max(w);
    }
    lay.chip_w = topo
        .functions()
        .filter(|f| f.physfn.is_some())
        .map(|f| text_w(&lay.chip_text(f.bdf), SMALL) + 8.0)
        .fold(0.0, f64::max);

    let islands = islands_in_tree_order(topo)?;
    let header_h = 86.0;
    let mut y = MARGIN + header_h;
    for &r in &roots {
        y = lay.place(r, y) + GROUP_GAP;
    }
    let content_right = MARGIN + lay.col_w.iter().map(|w| w + COL_GAP).sum::<f64>() - COL_GAP;
    let island_right = content_right + 12.0 + LABEL_W;
    let legend_y = y;
    let legend_h = 150.0;
    let width = (island_right + MARGIN).max(900.0);
    let height = legend_y + legend_h + MARGIN;

    let node_of: BTreeMap<Bdf, usize> = lay
        .nodes
        .iter()
        .enumerate()
        .filter_map(|(i, n)| match n.item {
            Item::Func(b) => Some((b, i)),
            Item::Host(_) => None,
        })
        .collect();
    let vf_pf: BTreeMap<Bdf, Bdf> = topo
        .functions()
        .filter_map(|f| f.physfn.map(|pf| (f.bdf, pf)))
        .collect();
    let island_of = |b: Bdf| islands.iter().position(|i: &Island| i.contains(b));

    let mut s = String::new();
    writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" font-family="{FONT_FAMILY}, monospace" font-size="{SIZE}">"#
    )?;
    writeln!(
        s,
        "<style>.t1{{fill:#111}} .t2{{fill:#555}} .ok{{fill:#2e7d32}} .warn{{fill:#b26a00}} .bad{{fill:#c62828}} .title{{font-size:16px;fill:#111}} .small{{font-size:{SMALL}px}}</style>"
    )?;
    writeln!(
        s,
        r##"<rect x="0" y="0" width="{width:.0}" height="{height:.0}" fill="#ffffff"/>"##
    )?;

    // Header.
    let cpu = topo.cpu();
    let cpu_line = if cpu.supports_p2pdma() {
        "CPU: AMD Zen or later: the kernel allows host-bridge routes everywhere (cpu_supports_p2pdma)"
            .to_string()
    } else {
        format!(
            "CPU: {}: host-bridge routes only where the host bridge is on the allowlist ({list_name})",
            cpu_name(topo)
        )
    };
    writeln!(
        s,
        r#"<text x="{MARGIN}" y="{:.1}" class="title">PCI tree and P2P islands: {}</text>"#,
        MARGIN + 16.0,
        esc(origin)
    )?;
    writeln!(
        s,
        r#"<text x="{MARGIN}" y="{:.1}" class="t2">{}, {}, {}. Linux P2PDMA rules (drivers/pci/p2pdma.c), allowlist {list_name}.</text>"#,
        MARGIN + 38.0,
        count(topo.functions().count(), "function", "functions"),
        count(topo.host_bridges().count(), "host bridge", "host bridges"),
        count(islands.len(), "P2P island", "P2P islands")
    )?;
    writeln!(
        s,
        r#"<text x="{MARGIN}" y="{:.1}" class="{}">{}</text>"#,
        MARGIN + 56.0,
        if cpu.supports_p2pdma() { "ok" } else { "t2" },
        esc(&cpu_line)
    )?;

    // Islands, under everything: one box from the island's top function to the label
    // column, over the top's subtree; functions of that subtree outside the island (cut
    // off by ACS redirect) are cut out of it. Outer islands first, so an island inside a
    // cut-out is drawn over it.
    let mut order: Vec<usize> = (0..islands.len()).collect();
    order.sort_by_key(|&k| {
        node_of
            .get(&islands[k].top)
            .map_or(0, |&i| lay.nodes[i].depth)
    });
    for k in order {
        let island = &islands[k];
        let fill = ISLAND_FILLS[k % ISLAND_FILLS.len()];
        let edge = ISLAND_EDGES[k % ISLAND_EDGES.len()];
        let members: Vec<String> = island.members.iter().map(ToString::to_string).collect();
        writeln!(
            s,
            r#"<g class="island" id="island-{}" data-top="{}" data-members="{}">"#,
            k + 1,
            island.top,
            members.join(" ")
        )?;
        writeln!(
            s,
            "<title>P2P island {}: {} functions below {} reach each other by bus address</title>",
            k + 1,
            island.members.len(),
            island.top
        )?;
        let Some(&top) = node_of.get(&island.top) else {
            writeln!(s, "</g>")?;
            continue;
        };
        let t = &lay.nodes[top];
        let x0 = t.x - 6.0;
        let y0 = t.y - ROW_GAP / 2.0 + 1.0;
        let y1 = lay.subtree_bottom(top) + ROW_GAP / 2.0 - 1.0;
        writeln!(
            s,
            r#"<rect x="{x0:.1}" y="{y0:.1}" width="{:.1}" height="{:.1}" rx="6" fill="{fill}" stroke="{edge}" stroke-width="1.2"/>"#,
            island_right - x0,
            y1 - y0
        )?;
        // Cut-outs: the topmost non-members of the subtree, with all below them.
        let mut sub = Vec::new();
        lay.subtree(top, &mut sub);
        let mut cut: Vec<usize> = Vec::new();
        for &i in &sub {
            let Item::Func(b) = lay.nodes[i].item else {
                continue;
            };
            let inside_cut = cut.iter().any(|&c| {
                let mut v = Vec::new();
                lay.subtree(c, &mut v);
                v.contains(&i)
            });
            if !island.contains(b) && !inside_cut {
                cut.push(i);
            }
        }
        for c in cut {
            let n = &lay.nodes[c];
            let cx = n.x - 4.0;
            let cy = n.y - ROW_GAP / 2.0 + 2.0;
            let bottom = lay.subtree_bottom(c) + ROW_GAP / 2.0 - 2.0;
            writeln!(
                s,
                r##"<rect x="{cx:.1}" y="{cy:.1}" width="{:.1}" height="{:.1}" rx="4" fill="#ffffff" stroke="{edge}" stroke-width="1" stroke-dasharray="3 3"/>"##,
                island_right - 3.0 - cx,
                bottom - cy
            )?;
        }
        let devices = island.devices(topo).count();
        writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" class="t1">P2P island {}</text>"#,
            content_right + 12.0,
            t.y + 14.0,
            k + 1
        )?;
        writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" class="t2 small">{devices} devices, bus_addr</text>"#,
            content_right + 12.0,
            t.y + 28.0
        )?;
        writeln!(s, "</g>")?;
    }

    // Tree edges.
    writeln!(s, r##"<g fill="none" stroke="#888" stroke-width="1.2">"##)?;
    for n in &lay.nodes {
        if n.children.is_empty() {
            continue;
        }
        let px = n.x + lay.col_w[n.depth];
        let py = n.y + 12.0;
        let bus_x = px + COL_GAP / 2.0;
        let last = n.children.last().map_or(py, |&c| lay.nodes[c].y + 12.0);
        writeln!(s, r#"<path d="M{px:.1} {py:.1} H{bus_x:.1} V{last:.1}"/>"#)?;
        for &c in &n.children {
            let child = &lay.nodes[c];
            writeln!(
                s,
                r#"<path d="M{bus_x:.1} {:.1} H{:.1}"/>"#,
                child.y + 12.0,
                child.x
            )?;
        }
    }
    writeln!(s, "</g>")?;

    // Boxes.
    for n in &lay.nodes {
        let w = lay.col_w[n.depth];
        let (id, bdf_attr, title, stroke, stroke_w, dash, fill) = match n.item {
            Item::Host(hb) => (
                format!("hb-{}", hb.to_string().replace(':', "_")),
                format!(r#" data-host-bridge="{hb}""#),
                format!("host bridge {hb}"),
                "#333",
                1.5,
                "",
                "#eeeeee",
            ),
            Item::Func(b) => {
                let f = topo.function(b);
                let (stroke, sw, dash) = match f.map(|f| f.acs) {
                    Some(AcsState::Control(c)) if c.redirects() => ("#c62828", 2.5, ""),
                    Some(AcsState::Unknown) => ("#b26a00", 1.5, r#" stroke-dasharray="4 3""#),
                    _ => ("#555", 1.0, ""),
                };
                (
                    format!("fn-{}", b.to_string().replace(':', "_")),
                    format!(r#" data-bdf="{b}""#),
                    format!("{b} {}", names.long(b)),
                    stroke,
                    sw,
                    dash,
                    "#ffffff",
                )
            }
        };
        let class = match n.item {
            Item::Host(_) => "host-bridge",
            Item::Func(_) => "function",
        };
        writeln!(s, r#"<g class="{class}" id="{id}"{bdf_attr}>"#)?;
        writeln!(s, "<title>{}</title>", esc(&title))?;
        writeln!(
            s,
            r#"<rect x="{:.1}" y="{:.1}" width="{w:.1}" height="{:.1}" rx="4" fill="{fill}" stroke="{stroke}" stroke-width="{stroke_w}"{dash}/>"#,
            n.x, n.y, n.h
        )?;
        for (li, line) in n.lines.iter().enumerate() {
            writeln!(
                s,
                r#"<text x="{:.1}" y="{:.1}" class="{}">{}</text>"#,
                n.x + PAD_X,
                n.y + PAD_Y + 11.0 + li as f64 * LINE,
                line.class,
                esc(&line.text)
            )?;
        }
        // VF chips inside the PF box.
        let per_row = lay.chips_per_row(n.depth);
        let chips_top = n.y + PAD_Y + n.lines.len() as f64 * LINE + 2.0;
        for (k, vf) in n.vfs.iter().enumerate() {
            let cx = n.x + PAD_X + (k % per_row) as f64 * (lay.chip_w + CHIP_GAP);
            let cy = chips_top + (k / per_row) as f64 * (CHIP_H + CHIP_GAP);
            let fill = island_of(*vf).map_or("#ffffff", |i| ISLAND_FILLS[i % ISLAND_FILLS.len()]);
            let (stroke, sw) = match topo.function(*vf).map(|f| f.acs) {
                Some(AcsState::Control(c)) if c.redirects() => ("#c62828", 2.0),
                _ => ("#888", 0.8),
            };
            writeln!(
                s,
                r#"<g class="function vf" id="fn-{}" data-bdf="{vf}" data-pf="{}">"#,
                vf.to_string().replace(':', "_"),
                vf_pf.get(vf).map_or_else(String::new, ToString::to_string)
            )?;
            writeln!(s, "<title>{vf} {} (VF)</title>", esc(names.long(*vf)))?;
            writeln!(
                s,
                r#"<rect x="{cx:.1}" y="{cy:.1}" width="{:.1}" height="{CHIP_H}" rx="3" fill="{fill}" stroke="{stroke}" stroke-width="{sw}"/>"#,
                lay.chip_w
            )?;
            writeln!(
                s,
                r#"<text x="{:.1}" y="{:.1}" class="t1 small">{}</text>"#,
                cx + 4.0,
                cy + 11.0,
                esc(&lay.chip_text(*vf))
            )?;
            writeln!(s, "</g>")?;
        }
        writeln!(s, "</g>")?;
    }

    // Legend.
    write_legend(&mut s, legend_y, width)?;
    writeln!(s, "</svg>")?;
    Ok(s)
}

fn write_legend(s: &mut String, y: f64, width: f64) -> Result<(), CliError> {
    let x = MARGIN;
    writeln!(s, r#"<g class="legend">"#)?;
    writeln!(
        s,
        r##"<rect x="{x}" y="{y:.1}" width="{:.1}" height="136" fill="#fafafa" stroke="#bbb"/>"##,
        width - 2.0 * MARGIN
    )?;
    writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" class="t1">Legend: how Linux routes P2P DMA between two functions (dmaspace explain A B tells why)</text>"#,
        x + 10.0,
        y + 20.0
    )?;
    let rows: [(&str, &str, &str, &str); 5] = [
        (
            ISLAND_FILLS[0],
            "none",
            "",
            "P2P island: members reach each other by bus address (bus_addr), the IOMMU bypassed",
        ),
        (
            "#ffffff",
            "#555",
            "",
            "outside one island: thru_host_bridge if the CPU rule or the host bridge's allowlist entry allows, else not_supported",
        ),
        (
            "#ffffff",
            "#c62828",
            "",
            "ACS redirect (RR/CR/EC): a path through this node goes up to the host bridge",
        ),
        (
            "#ffffff",
            "#b26a00",
            r#" stroke-dasharray="4 3""#,
            "ACS unknown (config space unreadable, run as root): never bus_addr",
        ),
        (
            "#ffffff",
            "#888",
            "",
            "small chips: SR-IOV VFs of the function (to the kernel, siblings of their PF)",
        ),
    ];
    for (i, (fill, stroke, dash, text)) in rows.iter().enumerate() {
        let ry = y + 34.0 + i as f64 * 20.0;
        let sw = if *stroke == "#c62828" { 2.5 } else { 1.0 };
        if i == rows.len() - 1 {
            // A VF chip, as drawn.
            writeln!(
                s,
                r#"<rect x="{:.1}" y="{ry:.1}" width="28" height="14" rx="3" fill="{fill}" stroke="{stroke}" stroke-width="0.8"/><text x="{:.1}" y="{:.1}" class="t1 small">v0</text>"#,
                x + 12.0,
                x + 19.0,
                ry + 11.0
            )?;
        } else {
            writeln!(
                s,
                r#"<rect x="{:.1}" y="{ry:.1}" width="28" height="14" rx="3" fill="{fill}" stroke="{stroke}" stroke-width="{sw}"{dash}/>"#,
                x + 12.0
            )?;
        }
        writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" class="t2">{}</text>"#,
            x + 50.0,
            ry + 11.0,
            esc(text)
        )?;
    }
    writeln!(s, "</g>")?;
    Ok(())
}

/// The largest PNG `png` renders, in pixels.
pub const PNG_MAX_PIXELS: u64 = 64_000_000;

/// Renders the SVG to PNG at `scale`, with the embedded font; a picture of more than
/// [`PNG_MAX_PIXELS`] is refused (lower `--scale`).
pub fn png(svg: &str, scale: f32) -> Result<Vec<u8>, CliError> {
    use resvg::{tiny_skia, usvg};
    let mut opt = usvg::Options {
        font_family: FONT_FAMILY.to_string(),
        ..usvg::Options::default()
    };
    opt.fontdb_mut().load_font_data(FONT.to_vec());
    let tree = usvg::Tree::from_str(svg, &opt)
        .map_err(|e| CliError::Render(format!("the SVG does not parse: {e}")))?;
    let size = tree.size();
    let (w, h) = (
        (size.width() * scale).ceil() as u32,
        (size.height() * scale).ceil() as u32,
    );
    // The RGBA pixmap is 4 bytes a pixel: 64 megapixels (256 MB) keeps the whole
    // command well under 512 MB (2,001 functions at scale 1 take 180 MB in all);
    // refuse rather than abort.
    if u64::from(w) * u64::from(h) > PNG_MAX_PIXELS {
        return Err(CliError::Argument(format!(
            "a {w}x{h} PNG is too large (more than {PNG_MAX_PIXELS} pixels): lower --scale"
        )));
    }
    let mut pixmap = tiny_skia::Pixmap::new(w, h)
        .ok_or_else(|| CliError::Render(format!("a {w}x{h} picture is too large")))?;
    resvg::render(
        &tree,
        tiny_skia::Transform::from_scale(scale, scale),
        &mut pixmap.as_mut(),
    );
    pixmap
        .encode_png()
        .map_err(|e| CliError::Render(format!("PNG encoding: {e}")))
}
