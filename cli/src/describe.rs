//! Words for the facts every output format shows: port types, ACS, the CPU rule, a host
//! bridge's allowlist status, the matrix class of a verdict.

use dmaspace_pci::{
    AcsState, AllowFlags, Bdf, CpuVendor, HostBridgeId, Island, MapType, PathAcs, PciFunction,
    PcieKind, Policy, Topology, Verdict,
};

use crate::error::CliError;

/// `root_port`, `endpoint`, `pci` (no PCIe capability), `unknown`.
pub fn port_str(f: &PciFunction) -> &'static str {
    match f.pcie {
        PcieKind::NotPcie => "pci",
        PcieKind::Pcie(t) => t.as_str(),
        PcieKind::Unknown => "unknown",
    }
}

/// `absent`, `0x001d`, `unknown`.
pub fn acs_str(acs: AcsState) -> String {
    match acs {
        AcsState::Absent => "absent".into(),
        AcsState::Control(c) => format!("0x{:04x}", c.bits()),
        AcsState::Unknown => "unknown".into(),
    }
}

/// The CPU and what it means for host-bridge routes.
pub fn cpu_str(topo: &Topology) -> String {
    let cpu = topo.cpu();
    let path = if cpu.supports_p2pdma() {
        "AMD Zen or later: host-bridge P2P allowed"
    } else {
        "host-bridge P2P only via the allowlist"
    };
    format!("{} ({path})", cpu_name(topo))
}

/// `x86 AMD family 0x17`, `not x86`.
pub fn cpu_name(topo: &Topology) -> String {
    let cpu = topo.cpu();
    if !cpu.x86 {
        return "not x86".into();
    }
    let vendor = match cpu.vendor {
        CpuVendor::Amd => "AMD",
        CpuVendor::Intel => "Intel",
        CpuVendor::Hygon => "Hygon",
        CpuVendor::Other => "other vendor",
    };
    format!("x86 {vendor} family 0x{:x}", cpu.family)
}

/// `1 host bridge`, `2 host bridges`.
pub fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// The islands in the order the picture shows them: host bridges by id, each tree
/// depth-first with children in BDF order. Every output numbers islands this way.
pub fn islands_in_tree_order(topo: &Topology) -> Result<Vec<Island>, CliError> {
    let mut order: Vec<Bdf> = Vec::new();
    fn visit(topo: &Topology, b: Bdf, order: &mut Vec<Bdf>) -> Result<(), CliError> {
        order.push(b);
        let mut kids = Vec::new();
        for f in topo.functions() {
            if topo.upstream_bridge(f.bdf)? == Some(b) && f.physfn.is_none() {
                kids.push(f.bdf);
            }
        }
        for k in kids {
            visit(topo, k, order)?;
        }
        for h in topo.host_bridges().filter(|h| h.below == Some(b)) {
            visit_hb(topo, h.id, order)?;
        }
        Ok(())
    }
    fn visit_hb(topo: &Topology, hb: HostBridgeId, order: &mut Vec<Bdf>) -> Result<(), CliError> {
        let mut roots = Vec::new();
        for f in topo.functions() {
            if f.host_bridge == hb && f.physfn.is_none() && topo.upstream_bridge(f.bdf)?.is_none() {
                roots.push(f.bdf);
            }
        }
        for r in roots {
            visit(topo, r, order)?;
        }
        Ok(())
    }
    for h in topo.host_bridges().filter(|h| h.below.is_none()) {
        visit_hb(topo, h.id, &mut order)?;
    }
    let mut islands = topo.islands()?;
    islands.sort_by_key(|i| order.iter().position(|&b| b == i.top).unwrap_or(usize::MAX));
    Ok(islands)
}

/// Whether host-bridge routes through `hb` are allowed by the allowlist.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HbStatus {
    /// On the list: routes below it and to other allowed host bridges.
    Allowed,
    /// On the list with `REQ_SAME_HOST_BRIDGE`: only routes below this host bridge.
    SameOnly,
    /// Its device is not on the list.
    NotListed,
    /// The kernel finds no host bridge device (first function neither 00.0 nor a
    /// Root Port), or it could not be read.
    NoDevice,
}

impl HbStatus {
    /// Of one host bridge under `policy`.
    pub fn of(topo: &Topology, hb: HostBridgeId, policy: &Policy) -> Self {
        match topo.host_bridge_dev(hb).0 {
            None => Self::NoDevice,
            Some(d) => match policy.allowlist.lookup(d.vendor, d.device) {
                None => Self::NotListed,
                Some(e) if e.flags.contains(AllowFlags::REQ_SAME_HOST_BRIDGE) => Self::SameOnly,
                Some(_) => Self::Allowed,
            },
        }
    }

    /// In words.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Allowed => "on the allowlist",
            Self::SameOnly => "on the allowlist, same host bridge only",
            Self::NotListed => "not on the allowlist",
            Self::NoDevice => "no host bridge device",
        }
    }
}

/// The `nvidia-smi topo -m` style class of a verdict, with the distance: `X`, `PIX2`,
/// `PXB4`, `PHB6`, `SYS8`, `NS`; `?` appended when ACS was unreadable.
pub fn matrix_cell(topo: &Topology, v: &Verdict) -> String {
    let mut s = match v.map_type {
        MapType::BusAddr if v.distance == 0 => "X".to_string(),
        MapType::BusAddr if v.distance <= 2 => format!("PIX{}", v.distance),
        MapType::BusAddr => format!("PXB{}", v.distance),
        MapType::ThruHostBridge => {
            let hb = |b| topo.function(b).map(|f| f.host_bridge);
            if hb(v.provider) == hb(v.client) {
                format!("PHB{}", v.distance)
            } else {
                format!("SYS{}", v.distance)
            }
        }
        MapType::NotSupported => "NS".to_string(),
    };
    if v.acs == PathAcs::Unknown {
        s.push('?');
    }
    s
}

/// The legend of [`matrix_cell`].
pub const MATRIX_LEGEND: &[&str] = &[
    "Legend (classes as in nvidia-smi topo -m; the kernel's verdict after '=>'; n = distance):",
    "  X     self                                           => bus_addr, distance 0",
    "  PIXn  through at most one PCIe bridge                => bus_addr, distance n",
    "  PXBn  through several PCIe bridges, no host bridge   => bus_addr, distance n",
    "  PHBn  through the PCIe host bridge (root complex)    => thru_host_bridge, distance n",
    "  SYSn  across host bridges (NUMA not read: no NODE)   => thru_host_bridge, distance n",
    "  NS    not supported: pci_p2pdma_distance() = -1    => not_supported",
    "  ?     ACS could not be read (run as root): reported NS, never bus_addr",
    "  distance = hops to the common upstream bridge, both sides summed (as Linux counts)",
    "  `dmaspace explain PROVIDER CLIENT` tells why, step by step, and the nearest fix",
];
