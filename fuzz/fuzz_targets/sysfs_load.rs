//! A sysfs tree generated from the input (functions under one of two host bridges,
//! nested below each other, VFs with `physfn` links, config-space images either well
//! formed or raw input bytes, ID files sometimes garbage, a `/proc/cpuinfo` of several
//! kinds, sometimes a bus link that leaves `sys/devices`), written into a temporary
//! directory and loaded. The loader must not panic; what it loads must classify the
//! same by the fast path, the kernel's walk and the all-pairs matrix, for every pair.
#![no_main]

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use dmaspace::pci::{Bdf, PairVerdict, Policy, sysfs};
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;

const HBS: [(u32, u8); 2] = [(0, 0), (1, 0x40)];

struct Node {
    bdf: Bdf,
    hb: usize,
    parent: Option<usize>,
    physfn: Option<usize>,
    vendor: String,
    device: String,
    class: String,
    config: Vec<u8>,
}

/// A config-space image: a PCIe capability of type `port` at 0x40 and, in extended
/// space, AER then (maybe) ACS with control `acs`; or raw bytes.
fn config(u: &mut Unstructured<'_>) -> Result<Vec<u8>> {
    if u.ratio(1, 4)? {
        let len = u.int_in_range(0..=4200usize)?;
        return Ok(u.bytes(len.min(u.len()))?.to_vec());
    }
    let ids: [u8; 4] = u.arbitrary()?;
    let port: Option<u8> = u.arbitrary()?;
    let acs: Option<u16> = u.arbitrary()?;
    let truncated = u.ratio(1, 8)?;
    let len = if port.is_some() { 4096 } else { 256 };
    let mut c = vec![0u8; len];
    c[0..4].copy_from_slice(&ids);
    if let Some(port) = port {
        c[6] = 0x10;
        c[0x34] = 0x40;
        c[0x40] = 0x10;
        c[0x42] = 0x02 | ((port & 0xf) << 4);
        let next: u32 = if acs.is_some() { 0x148 } else { 0 };
        let aer: u32 = 0x0001 | (2 << 16) | (next << 20);
        c[0x100..0x104].copy_from_slice(&aer.to_le_bytes());
        if let Some(ctrl) = acs {
            c[0x148..0x14c].copy_from_slice(&(0x000du32 | (1 << 16)).to_le_bytes());
            c[0x14e..0x150].copy_from_slice(&ctrl.to_le_bytes());
        }
    }
    if truncated {
        c.truncate(64);
    }
    Ok(c)
}

fn id_text(u: &mut Unstructured<'_>, digits: usize) -> Result<String> {
    if u.ratio(1, 16)? {
        let n = u.int_in_range(0..=8usize)?;
        return Ok(String::from_utf8_lossy(u.bytes(n.min(u.len()))?).into_owned());
    }
    let v: u32 = u.arbitrary()?;
    let v = v & ((1u64 << (4 * digits)) - 1) as u32;
    Ok(format!("0x{v:0digits$x}\n"))
}

fn nodes(u: &mut Unstructured<'_>) -> Result<Vec<Node>> {
    let n = u.int_in_range(1..=10usize)?;
    let mut out: Vec<Node> = Vec::with_capacity(n);
    for i in 0..n {
        let parent = if i > 0 && u.ratio(2, 3)? {
            Some(u.int_in_range(0..=i - 1)?)
        } else {
            None
        };
        let physfn = if i > 0 && u.ratio(1, 5)? {
            Some(u.int_in_range(0..=i - 1)?).filter(|&p| out[p].physfn.is_none())
        } else {
            None
        };
        let hb = match parent {
            Some(p) => out[p].hb,
            None => usize::from(u.arbitrary::<bool>()?),
        };
        let (dom, root) = HBS[hb];
        let bdf = match (physfn, parent) {
            (Some(pf), _) => Bdf::new(dom, out[pf].bdf.bus, 8 + i as u8, u.int_in_range(1..=7)?),
            (None, Some(_)) => Bdf::new(dom, root + 1 + i as u8, 0, u.int_in_range(0..=1)?),
            (None, None) => Bdf::new(dom, root, i as u8 + u.int_in_range(0..=1)?, 0),
        };
        out.push(Node {
            bdf,
            hb,
            parent,
            physfn,
            vendor: id_text(u, 4)?,
            device: id_text(u, 4)?,
            class: id_text(u, 6)?,
            config: config(u)?,
        });
    }
    Ok(out)
}

/// The directory of node `i` below `sys/devices`: its parents' (a VF's are its PF's).
fn rel(nodes: &[Node], i: usize) -> PathBuf {
    let mut parts = vec![nodes[i].bdf.to_string()];
    let mut cur = i;
    loop {
        let up = nodes[cur]
            .parent
            .or_else(|| nodes[cur].physfn.and_then(|pf| nodes[pf].parent));
        match up {
            Some(p) => {
                parts.push(nodes[p].bdf.to_string());
                cur = p;
            }
            None => {
                let (dom, bus) = HBS[nodes[cur].hb];
                parts.push(format!("pci{dom:04x}:{bus:02x}"));
                break;
            }
        }
    }
    parts.reverse();
    parts.iter().collect()
}

fn write(u: &mut Unstructured<'_>, nodes: &[Node], root: &Path) -> std::io::Result<()> {
    let devices = root.join("sys/devices");
    let bus = root.join("sys/bus/pci/devices");
    fs::create_dir_all(&devices)?;
    fs::create_dir_all(&bus)?;
    fs::create_dir_all(root.join("proc"))?;
    for (i, n) in nodes.iter().enumerate() {
        let rel = rel(nodes, i);
        let dir = devices.join(&rel);
        fs::create_dir_all(&dir)?;
        fs::write(dir.join("vendor"), &n.vendor)?;
        fs::write(dir.join("device"), &n.device)?;
        if !u.ratio(1, 32).unwrap_or(false) {
            fs::write(dir.join("class"), &n.class)?;
        }
        fs::write(dir.join("config"), &n.config)?;
        if let Some(pf) = n.physfn {
            symlink(
                Path::new("..").join(nodes[pf].bdf.to_string()),
                dir.join("physfn"),
            )?;
        }
        let target = if u.ratio(1, 64).unwrap_or(false) {
            PathBuf::from("../../../../proc")
        } else {
            Path::new("../../../devices").join(&rel)
        };
        symlink(target, bus.join(n.bdf.to_string()))?;
    }
    let cpuinfo = match u.int_in_range(0..=4u8).unwrap_or(0) {
        0 => "vendor_id\t: AuthenticAMD\ncpu family\t: 25\n".to_string(),
        1 => "vendor_id\t: GenuineIntel\ncpu family\t: 6\n".to_string(),
        2 => "processor\t: 0\nCPU implementer\t: 0x41\n".to_string(),
        3 => "vendor_id\t: AuthenticAMD\ncpu family\t: zen\n".to_string(),
        _ => {
            let n = u.int_in_range(0..=64usize).unwrap_or(0);
            String::from_utf8_lossy(u.bytes(n.min(u.len())).unwrap_or(&[])).into_owned()
        }
    };
    fs::write(root.join("proc/cpuinfo"), cpuinfo)
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let Ok(nodes) = nodes(&mut u) else { return };
    let Ok(dir) = tempfile::tempdir() else { return };
    // Two functions at one address cannot both be written: not a tree to load.
    if write(&mut u, &nodes, dir.path()).is_err() {
        return;
    }
    let Ok(topo) = sysfs::load(dir.path()) else {
        return;
    };
    let bdfs: Vec<Bdf> = topo.functions().map(|f| f.bdf).collect();
    for policy in [Policy::current(), Policy::linux_6_12()] {
        let all = topo.all_pairs(&policy);
        for &p in &bdfs {
            for &c in &bdfs {
                let fast = topo.verdict(p, c, &policy);
                assert_eq!(fast, topo.verdict_by_walk(p, c, &policy), "{p} -> {c}");
                if let (Ok(v), Ok(m)) = (fast, &all) {
                    assert_eq!(m.get(p, c), Some(PairVerdict::from(v)), "{p} -> {c}");
                }
            }
        }
    }
    let _ = topo.islands();
    if let Some(&b) = bdfs.first() {
        let _ = topo.explain(b, *bdfs.last().unwrap_or(&b), &Policy::default());
    }
});
