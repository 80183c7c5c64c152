//! A large generated PCI topology, the same in the tests and the benches: several host
//! bridges (one whose first root-bus function is a Root Port, not 00.0), root ports
//! with ACS (some redirecting), switches nested up to two deep, multi-function
//! endpoints, SR-IOV PFs with VFs. Deterministic for a seed.

use dmaspace_pci::{
    AcsCtrl, AcsState, Bdf, CpuInfo, CpuVendor, PciFunction, PciePortType, Topology,
};

/// A small deterministic generator (xorshift64*).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// 0..n
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Builds the functions of one generated machine.
struct Gen {
    rng: Rng,
    funcs: Vec<PciFunction>,
    /// Next free bus per domain.
    next_bus: Vec<u8>,
    /// `Unknown` ACS on some bridges (what a non-root reader of sysfs sees).
    unknown_acs: bool,
}

impl Gen {
    fn bus(&mut self, dom: usize) -> Option<u8> {
        let b = self.next_bus[dom];
        self.next_bus[dom] = b.checked_add(1)?;
        Some(b)
    }

    fn bridge_acs(&mut self) -> AcsState {
        match self.rng.below(16) {
            0..=2 => AcsState::Control(AcsCtrl::SV | AcsCtrl::RR | AcsCtrl::CR),
            3 => AcsState::Control(AcsCtrl::EC),
            4 if self.unknown_acs => AcsState::Unknown,
            5..=11 => AcsState::Control(AcsCtrl::SV),
            _ => AcsState::Absent,
        }
    }

    /// An endpoint (maybe multi-function, maybe an SR-IOV PF with VFs) on bus `bus`.
    fn endpoint(&mut self, dom: usize, bus: u8, parent: Bdf) {
        let pf = Bdf::new(dom as u32, bus, 0, 0);
        let acs = if self.rng.below(8) == 0 {
            AcsState::Control(AcsCtrl::RR)
        } else {
            AcsState::Absent
        };
        self.funcs.push(
            PciFunction::new(pf, 0x15b3, 0x101b)
                .with_class(0x020000)
                .with_port(PciePortType::Endpoint)
                .with_acs(acs)
                .under(parent),
        );
        match self.rng.below(3) {
            0 => {
                // A second function of the same device.
                self.funcs.push(
                    PciFunction::new(Bdf::new(dom as u32, bus, 0, 1), 0x15b3, 0x101b)
                        .with_port(PciePortType::Endpoint)
                        .under(parent),
                );
            }
            1 => {
                // VFs at devices 1.. of the PF's bus (routing-ID offset), 8 per device.
                let vfs = 4 + self.rng.below(13) as u8;
                for v in 0..vfs {
                    let vf = Bdf::new(dom as u32, bus, 1 + v / 8, v % 8);
                    self.funcs.push(
                        PciFunction::new(vf, 0x15b3, 0x101c)
                            .with_port(PciePortType::Endpoint)
                            .under(parent)
                            .vf_of(pf),
                    );
                }
            }
            _ => {}
        }
    }

    /// A switch below `port` (secondary bus `bus`), `depth` levels of nesting left.
    fn switch(&mut self, dom: usize, bus: u8, port: Bdf, depth: u32) -> Option<()> {
        let usp = Bdf::new(dom as u32, bus, 0, 0);
        self.funcs.push(
            PciFunction::new(usp, 0x10b5, 0x8796)
                .with_port(PciePortType::UpstreamPort)
                .under(port),
        );
        let inner = self.bus(dom)?;
        let dsps = 2 + self.rng.below(4) as u8;
        for d in 0..dsps {
            let dsp = Bdf::new(dom as u32, inner, d, 0);
            let acs = self.bridge_acs();
            self.funcs.push(
                PciFunction::new(dsp, 0x10b5, 0x8796)
                    .with_port(PciePortType::DownstreamPort)
                    .with_acs(acs)
                    .under(usp),
            );
            let below = self.bus(dom)?;
            if depth > 0 && self.rng.below(4) == 0 {
                self.switch(dom, below, dsp, depth - 1)?;
            } else {
                self.endpoint(dom, below, dsp);
            }
        }
        Some(())
    }
}

/// A machine with at least `min` functions over four host bridges (one per domain).
/// Host bridge devices: Intel 0x09a2 (allowlisted), Intel 0x2f00 (allowlisted, same
/// host bridge only), AMD 0x1480 (not listed), and on the fourth no 00.0 function, so
/// its first root port (Intel 0x2030, allowlisted) stands in. The CPU is Intel, so the
/// allowlist decides host-bridge routes. With `unknown_acs`, some bridges' ACS is
/// unreadable.
pub fn fleet(min: usize, seed: u64, unknown_acs: bool) -> Topology {
    let mut g = Gen {
        rng: Rng::new(seed),
        funcs: Vec::new(),
        next_bus: vec![1; 4],
        unknown_acs,
    };
    let hb_ids = [(0x8086, 0x09a2), (0x8086, 0x2f00), (0x1022, 0x1480)];
    for (dom, &(v, d)) in hb_ids.iter().enumerate() {
        g.funcs
            .push(PciFunction::new(Bdf::new(dom as u32, 0, 0, 0), v, d).with_class(0x060000));
    }
    let mut slot = [1u8; 4];
    let mut dom = 0usize;
    while g.funcs.len() < min {
        let dev = slot[dom];
        if dev >= 32 {
            assert!(slot.iter().any(|&s| s < 32), "room for {min} functions");
            dom = (dom + 1) % 4;
            continue;
        }
        slot[dom] += 1;
        let rp = Bdf::new(dom as u32, 0, dev, 0);
        let acs = g.bridge_acs();
        let ids = if dom == 3 {
            (0x8086, 0x2030)
        } else {
            (0x8086, 0x347a)
        };
        g.funcs.push(
            PciFunction::new(rp, ids.0, ids.1)
                .with_class(0x060400)
                .with_port(PciePortType::RootPort)
                .with_acs(acs),
        );
        let Some(sec) = g.bus(dom) else {
            slot[dom] = 32;
            continue;
        };
        match g.rng.below(4) {
            0 => g.endpoint(dom, sec, rp),
            _ => {
                if g.switch(dom, sec, rp, 1).is_none() {
                    slot[dom] = 32;
                }
            }
        }
        dom = (dom + 1) % 4;
    }
    let mut b = Topology::builder().cpu(CpuInfo::x86(CpuVendor::Intel, 6));
    for f in g.funcs {
        b.push(f);
    }
    b.build().expect("the generated fleet builds")
}
