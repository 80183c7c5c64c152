//! Shared test helpers: declarative PCI trees, turned into a `Topology` with the
//! builder or written out as a sysfs tree (the fixture generator).
//!
//! Regenerate the committed fixtures with
//! `DMASPACE_REGEN_FIXTURES=1 cargo test --test topology_fixtures`.

#![expect(
    missing_docs,
    reason = "test helpers, documented by the module comment"
)]

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use dmaspace_pci::{
    AcsCtrl, AcsState, Bar, BarFlags, Bdf, CpuInfo, CpuVendor, HostBridgeId, MapType, PciFunction,
    PciePortType, Topology,
};

/// A row of the brief's real-kernel table: (row, ACS redirect on (RP1, RP3), provider,
/// client, plain CPU (distance, map), AMD Zen (distance, map)).
pub type Row = (
    &'static str,
    (bool, bool),
    &'static str,
    &'static str,
    (i32, MapType),
    (i32, MapType),
);

use MapType::{BusAddr as BA, NotSupported as NS, ThruHostBridge as HB};

/// The brief's table (Linux 6.12.117 in QEMU q35).
pub const KERNEL_TABLE: &[Row] = &[
    ("A->A", (false, false), A, A, (0, BA), (0, BA)),
    ("A->B", (false, false), A, B, (4, BA), (4, BA)),
    ("D0->D1", (false, false), D0, D1, (2, BA), (2, BA)),
    ("A->C", (false, false), A, C, (-1, NS), (6, HB)),
    ("E->F", (false, false), E, F, (-1, NS), (2, HB)),
    ("A->E", (false, false), A, E, (-1, NS), (5, HB)),
    ("A->RP1", (false, false), A, RP1, (3, BA), (3, BA)),
    ("A->B, ACS on RP1", (true, false), A, B, (4, BA), (4, BA)),
    (
        "A->RP1, ACS on RP1",
        (true, false),
        A,
        RP1,
        (-1, NS),
        (3, HB),
    ),
    (
        "D0->D1, ACS on RP3",
        (false, true),
        D0,
        D1,
        (-1, NS),
        (2, HB),
    ),
    (
        "RP1->RP1, ACS on RP1",
        (true, false),
        RP1,
        RP1,
        (-1, NS),
        (0, HB),
    ),
    (
        "D0->D0, ACS on RP3",
        (false, true),
        D0,
        D0,
        (0, BA),
        (0, BA),
    ),
];

/// The committed fixture holding a table row's ACS setting and CPU.
pub fn q35_fixture_name(acs: (bool, bool), zen: bool) -> &'static str {
    match (acs, zen) {
        ((false, false), false) => "q35",
        ((false, false), true) => "q35-zen",
        ((true, false), false) => "q35-acs-rp1",
        ((true, false), true) => "q35-acs-rp1-zen",
        (_, false) => "q35-acs-rp3",
        (_, true) => "q35-acs-rp3-zen",
    }
}

/// One function of a declarative tree.
#[derive(Clone, Debug)]
pub struct Node {
    pub bdf: &'static str,
    pub vendor: u16,
    pub device: u16,
    pub class: u32,
    /// PCIe port type (raw), `None` for conventional PCI.
    pub port: Option<u8>,
    /// ACS capability with this control value.
    pub acs: Option<u16>,
    pub parent: Option<&'static str>,
    pub physfn: Option<&'static str>,
    /// Host bridge, for functions on a root bus (`pciDDDD:BB`).
    pub hb: &'static str,
    /// BARs; a node with any gets a `resource` file and BAR registers.
    pub bars: Vec<BarSpec>,
}

/// One BAR of a node: index, CPU start (= bus start: x86), size, and the
/// kernel's flags word as sysfs `resource` prints it.
#[derive(Clone, Copy, Debug)]
pub struct BarSpec {
    pub index: u8,
    pub start: u64,
    pub size: u64,
    pub flags: u64,
}

/// `IORESOURCE_MEM | IORESOURCE_MEM_64 | IORESOURCE_SIZEALIGN` and the
/// register's type bits, as the kernel shows a 64-bit BAR.
pub const MEM64: u64 = 0x0014_0204;
/// The same, prefetchable (`IORESOURCE_PREFETCH`, register bit 3).
pub const MEM64_PREF: u64 = 0x0014_220c;
/// `IORESOURCE_IO | IORESOURCE_SIZEALIGN` and the register's I/O bit.
pub const IO: u64 = 0x0004_0101;

pub const EP: u8 = 0;
pub const RP: u8 = 4;
pub const USP: u8 = 5;
pub const DSP: u8 = 6;
pub const RCIEP: u8 = 9;

pub fn node(bdf: &'static str, vendor: u16, device: u16, class: u32, port: Option<u8>) -> Node {
    Node {
        bdf,
        vendor,
        device,
        class,
        port,
        acs: None,
        parent: None,
        physfn: None,
        hb: "pci0000:00",
        bars: vec![],
    }
}

impl Node {
    pub fn under(mut self, p: &'static str) -> Self {
        self.parent = Some(p);
        self
    }
    pub fn acs(mut self, ctrl: u16) -> Self {
        self.acs = Some(ctrl);
        self
    }
    pub fn vf_of(mut self, pf: &'static str) -> Self {
        self.physfn = Some(pf);
        self
    }
    pub fn hb(mut self, hb: &'static str) -> Self {
        self.hb = hb;
        self
    }
    pub fn bar(mut self, index: u8, start: u64, size: u64, flags: u64) -> Self {
        self.bars.push(BarSpec {
            index,
            start,
            size,
            flags,
        });
        self
    }
}

/// A declarative tree.
#[derive(Clone, Debug)]
pub struct Spec {
    pub name: &'static str,
    pub nodes: Vec<Node>,
    /// (`vendor_id`, family); `None` writes an ARM-like cpuinfo.
    pub cpu: Option<(&'static str, u32)>,
    /// Host bridges below a function: (hb, function).
    pub nested: Vec<(&'static str, &'static str)>,
    /// Write 64-byte config files, as a non-root reader sees them.
    pub truncated: bool,
}

pub fn bdf(s: &str) -> Bdf {
    s.parse().expect("test BDF")
}

pub const PLAIN_CPU: Option<(&str, u32)> = Some(("GenuineIntel", 6));
pub const ZEN_CPU: Option<(&str, u32)> = Some(("AuthenticAMD", 0x17));

/// The brief's QEMU q35 tree. `acs_rp1`/`acs_rp3`: set ACS redirect (SV|RR|CR|UF).
pub fn q35(
    name: &'static str,
    cpu: Option<(&'static str, u32)>,
    acs_rp1: bool,
    acs_rp3: bool,
) -> Spec {
    let redirect = 0x001d;
    let rp_acs = |on: bool| if on { redirect } else { 0 };
    Spec {
        name,
        cpu,
        nested: vec![],
        truncated: false,
        nodes: vec![
            node("0000:00:00.0", 0x8086, 0x29c0, 0x060000, None),
            node("0000:00:02.0", 0x1b36, 0x000c, 0x060400, Some(RP)).acs(rp_acs(acs_rp1)),
            node("0000:00:02.1", 0x1b36, 0x000c, 0x060400, Some(RP)).acs(0),
            node("0000:00:02.2", 0x1b36, 0x000c, 0x060400, Some(RP)).acs(rp_acs(acs_rp3)),
            node("0000:00:03.0", 0x1b36, 0x0010, 0x010802, Some(RCIEP))
                .bar(0, 0xfea0_0000, 0x4000, MEM64)
                .bar(4, 0xc000, 0x40, IO),
            node("0000:00:04.0", 0x1b36, 0x0010, 0x010802, Some(RCIEP)),
            node("0000:01:00.0", 0x104c, 0x8232, 0x060400, Some(USP)).under("0000:00:02.0"),
            node("0000:02:00.0", 0x104c, 0x8233, 0x060400, Some(DSP)).under("0000:01:00.0"),
            node("0000:02:01.0", 0x104c, 0x8233, 0x060400, Some(DSP)).under("0000:01:00.0"),
            // A and B: NVMe with a 16 MiB CMB in a 64-bit prefetchable BAR 2 above 4 GiB.
            node("0000:03:00.0", 0x1b36, 0x0010, 0x010802, Some(EP))
                .under("0000:02:00.0")
                .bar(0, 0xfe80_0000, 0x4000, MEM64)
                .bar(2, 0x8_0000_0000, 16 << 20, MEM64_PREF),
            node("0000:04:00.0", 0x1b36, 0x0010, 0x010802, Some(EP))
                .under("0000:02:01.0")
                .bar(0, 0xfe60_0000, 0x4000, MEM64)
                .bar(2, 0x8_0100_0000, 16 << 20, MEM64_PREF),
            node("0000:05:00.0", 0x1b36, 0x0010, 0x010802, Some(EP)).under("0000:00:02.1"),
            node("0000:06:00.0", 0x1b36, 0x0010, 0x010802, Some(EP)).under("0000:00:02.2"),
            node("0000:06:00.1", 0x1b36, 0x0010, 0x010802, Some(EP)).under("0000:00:02.2"),
        ],
    }
}

/// Names of the q35 functions, as the brief's table uses them.
pub const A: &str = "0000:03:00.0";
pub const B: &str = "0000:04:00.0";
pub const C: &str = "0000:05:00.0";
pub const D0: &str = "0000:06:00.0";
pub const D1: &str = "0000:06:00.1";
pub const E: &str = "0000:00:03.0";
pub const F: &str = "0000:00:04.0";
pub const RP1: &str = "0000:00:02.0";
pub const RP3: &str = "0000:00:02.2";

/// Two host bridges whose first functions are `hb_dev` (vendor, device), each with a
/// root port and an NVMe below it.
pub fn two_hosts(name: &'static str, hb_dev: (u16, u16), cpu: Option<(&'static str, u32)>) -> Spec {
    Spec {
        name,
        cpu,
        nested: vec![],
        truncated: false,
        nodes: vec![
            node("0000:00:00.0", hb_dev.0, hb_dev.1, 0x060000, None),
            node("0000:00:01.0", 0x8086, 0x3c02, 0x060400, Some(RP)).acs(0),
            node("0000:00:02.0", 0x8086, 0x3c04, 0x060400, Some(RP)).acs(0),
            node("0000:01:00.0", 0x144d, 0xa808, 0x010802, Some(EP)).under("0000:00:01.0"),
            node("0000:02:00.0", 0x144d, 0xa808, 0x010802, Some(EP)).under("0000:00:02.0"),
            node("0000:80:00.0", hb_dev.0, hb_dev.1, 0x060000, None).hb("pci0000:80"),
            node("0000:80:01.0", 0x8086, 0x3c02, 0x060400, Some(RP))
                .acs(0)
                .hb("pci0000:80"),
            node("0000:81:00.0", 0x144d, 0xa808, 0x010802, Some(EP)).under("0000:80:01.0"),
        ],
    }
}

/// A root bus whose first function sits at 00:01.0 with id 8086:2030 (allowlisted),
/// either as a Root Port or as an endpoint.
pub fn first_not_00(name: &'static str, first_is_root_port: bool) -> Spec {
    let port = if first_is_root_port { RP } else { RCIEP };
    Spec {
        name,
        cpu: PLAIN_CPU,
        nested: vec![],
        truncated: false,
        nodes: vec![
            node("0000:00:01.0", 0x8086, 0x2030, 0x060400, Some(port)).acs(0),
            node("0000:00:02.0", 0x8086, 0x2031, 0x060400, Some(RP)).acs(0),
            node("0000:01:00.0", 0x144d, 0xa808, 0x010802, Some(EP)).under("0000:00:02.0"),
            node("0000:00:05.0", 0x144d, 0xa808, 0x010802, Some(RCIEP)),
        ],
    }
}

/// SR-IOV: a PF with two VFs below a root port, another NVMe on a second root port.
pub fn sriov(name: &'static str) -> Spec {
    Spec {
        name,
        cpu: PLAIN_CPU,
        nested: vec![],
        truncated: false,
        nodes: vec![
            node("0000:00:00.0", 0x8086, 0x29c0, 0x060000, None),
            node("0000:00:02.0", 0x1b36, 0x000c, 0x060400, Some(RP)).acs(0),
            node("0000:00:03.0", 0x1b36, 0x000c, 0x060400, Some(RP)).acs(0),
            node("0000:01:00.0", 0x15b3, 0x101d, 0x020000, Some(EP))
                .under("0000:00:02.0")
                .bar(0, 0xfe00_0000, 1 << 20, MEM64_PREF),
            // A VF: its BAR registers read zero, so its bus start is unknown.
            node("0000:01:00.1", 0x15b3, 0x101e, 0x020000, Some(EP))
                .under("0000:00:02.0")
                .vf_of("0000:01:00.0")
                .bar(0, 0xfe10_0000, 0x2000, MEM64_PREF),
            node("0000:01:00.2", 0x15b3, 0x101e, 0x020000, Some(EP))
                .under("0000:00:02.0")
                .vf_of("0000:01:00.0"),
            node("0000:02:00.0", 0x1b36, 0x0010, 0x010802, Some(EP)).under("0000:00:03.0"),
        ],
    }
}

/// Intel VMD: host bridge pci10000:00 below function 0000:00:0e.0.
pub fn vmd(name: &'static str) -> Spec {
    Spec {
        name,
        cpu: PLAIN_CPU,
        nested: vec![("pci10000:00", "0000:00:0e.0")],
        truncated: false,
        nodes: vec![
            node("0000:00:00.0", 0x8086, 0x09a2, 0x060000, None),
            node("0000:00:01.0", 0x8086, 0x347a, 0x060400, Some(RP)).acs(0),
            node("0000:01:00.0", 0x144d, 0xa808, 0x010802, Some(EP)).under("0000:00:01.0"),
            node("0000:00:0e.0", 0x8086, 0x28c0, 0x010400, Some(RCIEP)),
            node("10000:00:02.0", 0x8086, 0x347a, 0x060400, Some(RP))
                .acs(0)
                .hb("pci10000:00"),
            node("10000:00:03.0", 0x8086, 0x347b, 0x060400, Some(RP))
                .acs(0)
                .hb("pci10000:00"),
            node("10000:01:00.0", 0x144d, 0xa808, 0x010802, Some(EP)).under("10000:00:02.0"),
            node("10000:02:00.0", 0x144d, 0xa808, 0x010802, Some(EP)).under("10000:00:03.0"),
        ],
    }
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

fn at(domain_bus: u8, dev: u8, func: u8) -> &'static str {
    leak(format!("0000:{domain_bus:02x}:{dev:02x}.{func}"))
}

/// A DGX-class server (generated): two sockets of Xeon host bridges (Ice Lake-SP IDs,
/// on both allowlists), four PCIe switches (Broadcom PEX890xx), each on a root port of
/// its own root bus and holding two GPUs (H100 SXM5), two NICs (ConnectX-7, 8 VFs each)
/// and two NVMe drives; plus a BMC VGA behind an ASPEED bridge and a management NIC.
/// Root ports have ACS redirect (IOMMU on); switch downstream ports have it off, except
/// on the fourth switch, whose devices are therefore not an island, and on the port of
/// the first switch's second GPU, which cuts that GPU out of its island. 130 functions.
pub fn dgx(name: &'static str) -> Spec {
    const HB_DEV: (u16, u16) = (0x8086, 0x09a2);
    const RP_ID: (u16, u16) = (0x8086, 0x347a);
    const SWITCH: (u16, u16) = (0x1000, 0xc030);
    const GPU: (u16, u16, u32) = (0x10de, 0x2330, 0x030200);
    const NIC: (u16, u16, u32) = (0x15b3, 0x1021, 0x020000);
    const NIC_VF: (u16, u16) = (0x15b3, 0x101e);
    const NVME: (u16, u16, u32) = (0x144d, 0xa824, 0x010802);
    let rp_acs = 0x001d; // SV RR CR UF
    let mut nodes = vec![
        node("0000:00:00.0", HB_DEV.0, HB_DEV.1, 0x060000, None),
        node("0000:00:01.0", RP_ID.0, RP_ID.1, 0x060400, Some(RP)).acs(rp_acs),
        node("0000:00:02.0", RP_ID.0, 0x347b, 0x060400, Some(RP)).acs(rp_acs),
        node("0000:01:00.0", 0x1a03, 0x1150, 0x060400, Some(7)).under("0000:00:01.0"),
        node("0000:02:00.0", 0x1a03, 0x2000, 0x030000, None).under("0000:01:00.0"),
        node("0000:03:00.0", 0x8086, 0x1533, 0x020000, Some(EP)).under("0000:00:02.0"),
    ];
    for (k, root) in [0x15u8, 0x37, 0x97, 0xb7].into_iter().enumerate() {
        let hb = leak(format!("pci0000:{root:02x}"));
        let rp = at(root, 1, 0);
        let usp = at(root + 1, 0, 0);
        let dsp_acs = if k == 3 { 0x001d } else { 0x0000 };
        nodes.push(node(at(root, 0, 0), HB_DEV.0, HB_DEV.1, 0x060000, None).hb(hb));
        nodes.push(
            node(rp, RP_ID.0, RP_ID.1, 0x060400, Some(RP))
                .acs(rp_acs)
                .hb(hb),
        );
        nodes.push(node(usp, SWITCH.0, SWITCH.1, 0x060400, Some(USP)).under(rp));
        let endpoints = [GPU, GPU, NIC, NIC, NVME, NVME];
        for (d, (vendor, device, class)) in endpoints.into_iter().enumerate() {
            let d = d as u8;
            let dsp = at(root + 2, d, 0);
            let acs = if (k, d) == (0, 1) { 0x001d } else { dsp_acs };
            nodes.push(
                node(dsp, SWITCH.0, SWITCH.1, 0x060400, Some(DSP))
                    .acs(acs)
                    .under(usp),
            );
            let bus = root + 3 + d;
            let pf = at(bus, 0, 0);
            nodes.push(node(pf, vendor, device, class, Some(EP)).under(dsp));
            if class == NIC.2 {
                for v in 1..=8u8 {
                    let vf = at(bus, v / 8, v % 8);
                    nodes.push(
                        node(vf, NIC_VF.0, NIC_VF.1, class, Some(EP))
                            .under(dsp)
                            .vf_of(pf),
                    );
                }
            }
        }
    }
    Spec {
        name,
        cpu: PLAIN_CPU,
        nested: vec![],
        truncated: false,
        nodes,
    }
}

/// Every fixture committed under tests/fixtures/synthetic.
pub fn all_specs() -> Vec<Spec> {
    let mut nonroot = q35("q35-nonroot", PLAIN_CPU, false, false);
    nonroot.truncated = true;
    vec![
        q35("q35", PLAIN_CPU, false, false),
        q35("q35-zen", ZEN_CPU, false, false),
        q35("q35-acs-rp1", PLAIN_CPU, true, false),
        q35("q35-acs-rp1-zen", ZEN_CPU, true, false),
        q35("q35-acs-rp3", PLAIN_CPU, false, true),
        q35("q35-acs-rp3-zen", ZEN_CPU, false, true),
        nonroot,
        two_hosts("xeon-e5-two-hosts", (0x8086, 0x3c00), PLAIN_CPU),
        two_hosts("skylake-two-hosts", (0x8086, 0x2020), PLAIN_CPU),
        two_hosts("google-two-hosts", (0x1ae0, 0x0042), None),
        first_not_00("first-rp-not-00", true),
        first_not_00("first-ep-not-00", false),
        sriov("sriov"),
        vmd("vmd"),
        dgx("dgx"),
    ]
}

pub fn spec(name: &str) -> Spec {
    all_specs()
        .into_iter()
        .find(|s| s.name == name)
        .expect("known fixture")
}

fn cpu_info(cpu: Option<(&str, u32)>) -> CpuInfo {
    match cpu {
        Some((v, fam)) => CpuInfo::x86(CpuVendor::from_vendor_id(v), fam),
        None => CpuInfo::other(),
    }
}

/// The spec through the builder API.
pub fn build(spec: &Spec) -> Topology {
    let mut b = Topology::builder().cpu(cpu_info(spec.cpu));
    for &(hb, below) in &spec.nested {
        let hb: HostBridgeId = hb.parse().expect("test host bridge");
        b = b.host_bridge_below(hb, bdf(below));
    }
    for n in &spec.nodes {
        let mut f = PciFunction::new(bdf(n.bdf), n.vendor, n.device).with_class(n.class);
        f = f.on_host_bridge(n.hb.parse().expect("test host bridge"));
        if let Some(p) = n.port {
            f = f.with_port(PciePortType::from_raw(p));
        }
        if let Some(c) = n.acs {
            f = f.with_acs(AcsState::Control(AcsCtrl::from_bits_retain(c)));
        }
        if spec.truncated && n.port.is_some() {
            f = f
                .with_acs(AcsState::Unknown)
                .with_pcie(dmaspace_pci::PcieKind::Unknown);
        }
        if let Some(p) = n.parent {
            f = f.under(bdf(p));
        }
        if let Some(p) = n.physfn {
            f = f.vf_of(bdf(p));
        }
        b.push(f);
        for bar in &n.bars {
            let mut each = Bar::new(
                bar.index,
                bar.start,
                bar.size,
                BarFlags::from_bits_truncate(bar.flags),
            )
            .expect("test BAR");
            if n.physfn.is_none() && bar.flags & 0x200 != 0 {
                // The bus start the generator writes into the BAR register.
                each = each.with_bus_start(bar.start).expect("test bus start");
            }
            b.push_bar(bdf(n.bdf), each);
        }
    }
    b.build().expect("test topology builds")
}

/// A config-space image with a real capability list: the PCIe capability at 0x40 and,
/// for PCIe functions, AER at 0x100 followed by ACS at 0x148 when the node has ACS.
pub fn config_blob(n: &Node, truncated: bool) -> Vec<u8> {
    let len = if n.port.is_some() { 4096 } else { 256 };
    let mut c = vec![0u8; len];
    c[0..2].copy_from_slice(&n.vendor.to_le_bytes());
    c[2..4].copy_from_slice(&n.device.to_le_bytes());
    c[4..6].copy_from_slice(&0x0406u16.to_le_bytes()); // command: mem, master, intx off
    c[8] = 0x02; // revision
    c[9] = (n.class & 0xff) as u8;
    c[10] = ((n.class >> 8) & 0xff) as u8;
    c[11] = ((n.class >> 16) & 0xff) as u8;
    let bridge = (n.class >> 8) == 0x0604;
    c[0x0e] = u8::from(bridge);
    // BAR registers (a VF's read zero): address | the flags' low type bits.
    for bar in n.bars.iter().filter(|_| n.physfn.is_none()) {
        let at = 0x10 + 4 * usize::from(bar.index);
        let reg = bar.start | (bar.flags & 0xf);
        c[at..at + 4].copy_from_slice(&(reg as u32).to_le_bytes());
        if bar.flags & 0x0010_0000 != 0 {
            c[at + 4..at + 8].copy_from_slice(&((reg >> 32) as u32).to_le_bytes());
        }
    }
    if let Some(port) = n.port {
        c[6] = 0x10; // status: capability list
        c[0x34] = 0x40;
        // PCIe capability: id 0x10, next 0x00, capabilities register: version 2, type.
        c[0x40] = 0x10;
        c[0x41] = 0x00;
        c[0x42] = 0x02 | (port << 4);
        c[0x43] = 0x00;
        // Extended list: AER (id 1, version 2) then maybe ACS (id 0xd, version 1).
        let next: u32 = if n.acs.is_some() { 0x148 } else { 0 };
        let aer: u32 = 0x0001 | (2 << 16) | (next << 20);
        c[0x100..0x104].copy_from_slice(&aer.to_le_bytes());
        if let Some(ctrl) = n.acs {
            let acs: u32 = 0x000d | (1 << 16);
            c[0x148..0x14c].copy_from_slice(&acs.to_le_bytes());
            c[0x14c..0x14e].copy_from_slice(&0x005fu16.to_le_bytes()); // ACS capability
            c[0x14e..0x150].copy_from_slice(&ctrl.to_le_bytes());
        }
    }
    if truncated {
        c.truncate(64);
    }
    c
}

/// A node's sysfs `resource`: one line per BAR, the ROM and the SR-IOV BARs
/// (13 lines, as the kernel prints for an endpoint).
pub fn resource_file(n: &Node) -> String {
    (0..13u8)
        .map(|i| {
            let (start, end, flags) = match n.bars.iter().find(|b| b.index == i) {
                Some(b) => (b.start, b.start + b.size - 1, b.flags),
                None => (0, 0, 0),
            };
            format!("0x{start:016x} 0x{end:016x} 0x{flags:016x}\n")
        })
        .collect()
}

/// The sysfs path components from `sys/devices` down to a node's directory.
fn dev_path(spec: &Spec, n: &Node) -> PathBuf {
    let mut parts: Vec<String> = vec![n.bdf.to_string()];
    let mut cur = n.clone();
    loop {
        let up = cur.parent.or_else(|| {
            cur.physfn
                .and_then(|pf| spec.nodes.iter().find(|m| m.bdf == pf))
                .and_then(|pf| pf.parent)
        });
        match up {
            Some(p) => {
                let pn = spec
                    .nodes
                    .iter()
                    .find(|m| m.bdf == p)
                    .expect("parent in spec")
                    .clone();
                parts.push(p.to_string());
                cur = pn;
            }
            None => {
                parts.push(cur.hb.to_string());
                match spec.nested.iter().find(|(hb, _)| *hb == cur.hb) {
                    Some((_, below)) => {
                        let pn = spec
                            .nodes
                            .iter()
                            .find(|m| m.bdf == *below)
                            .expect("vmd fn")
                            .clone();
                        parts.push(below.to_string());
                        cur = pn;
                    }
                    None => break,
                }
            }
        }
    }
    parts.reverse();
    parts.iter().collect()
}

#[cfg(unix)]
fn symlink(target: &Path, link: &Path) -> io::Result<()> {
    std::os::unix::fs::symlink(target, link)
}

/// Writes the spec as a sysfs tree under `root` (which must not exist or be empty).
pub fn write_tree(spec: &Spec, root: &Path) -> io::Result<()> {
    let devices = root.join("sys/devices");
    let bus = root.join("sys/bus/pci/devices");
    fs::create_dir_all(&devices)?;
    fs::create_dir_all(&bus)?;
    fs::create_dir_all(root.join("proc"))?;
    for n in &spec.nodes {
        let rel = dev_path(spec, n);
        let dir = devices.join(&rel);
        fs::create_dir_all(&dir)?;
        fs::write(dir.join("vendor"), format!("0x{:04x}\n", n.vendor))?;
        fs::write(dir.join("device"), format!("0x{:04x}\n", n.device))?;
        fs::write(dir.join("class"), format!("0x{:06x}\n", n.class))?;
        fs::write(dir.join("config"), config_blob(n, spec.truncated))?;
        if !n.bars.is_empty() {
            fs::write(dir.join("resource"), resource_file(n))?;
        }
        if let Some(pf) = n.physfn {
            symlink(&Path::new("..").join(pf), &dir.join("physfn"))?;
        }
        let mut target = PathBuf::from("../../../devices");
        target.push(&rel);
        symlink(&target, &bus.join(n.bdf))?;
    }
    let cpuinfo = match spec.cpu {
        Some((v, fam)) => format!(
            "processor\t: 0\nvendor_id\t: {v}\ncpu family\t: {fam}\nmodel\t\t: 1\nmodel name\t: synthetic\n\n\
             processor\t: 1\nvendor_id\t: {v}\ncpu family\t: {fam}\nmodel\t\t: 1\nmodel name\t: synthetic\n\n"
        ),
        None => {
            "processor\t: 0\nBogoMIPS\t: 50.00\nCPU implementer\t: 0x41\nCPU architecture: 8\n\n"
                .to_string()
        }
    };
    fs::write(root.join("proc/cpuinfo"), cpuinfo)?;
    Ok(())
}

/// Where the committed fixtures live.
pub fn fixtures_dir() -> PathBuf {
    // The `pci` and `cli` members both include this module; both sit one
    // level below the workspace root.
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../pci/tests/fixtures/synthetic")
}

/// The `root` of a committed fixture.
pub fn fixture_root(name: &str) -> PathBuf {
    fixtures_dir().join(name).join("root")
}

/// A host full of SR-IOV VFs, all on one root bus: a host bridge (00:00.0, q35's, on no
/// allowlist) and `pfs` NICs (00:01.0, 00:02.0, ...; at most 31), each with `vfs` VFs
/// on a bus of its own (at most 255); `1 + pfs * (1 + vfs)` functions. The names are
/// leaked (`&'static`).
pub fn fleet(name: &'static str, pfs: u8, vfs: u16) -> Spec {
    assert!((1..=31).contains(&pfs) && vfs <= 255);
    let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
    let mut nodes = vec![node("0000:00:00.0", 0x8086, 0x29c0, 0x060000, None)];
    for p in 0..pfs {
        let pf = leak(format!("0000:00:{:02x}.0", p + 1));
        nodes.push(node(pf, 0x15b3, 0x101d, 0x020000, Some(RCIEP)));
        for v in 0..vfs {
            let bus = p + 1;
            let vf = leak(format!("0000:{bus:02x}:{:02x}.{}", v / 8, v % 8));
            nodes.push(node(vf, 0x15b3, 0x101e, 0x020000, Some(RCIEP)).vf_of(pf));
        }
    }
    Spec {
        name,
        cpu: PLAIN_CPU,
        nested: vec![],
        truncated: false,
        nodes,
    }
}
