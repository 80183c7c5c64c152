//! The embedded reference machine of `dmaspace demo`: a two-socket Intel
//! Ice Lake-SP server, each socket with a PCIe switch holding a GPU, a NIC
//! and an NVMe drive, and one more NVMe drive on its own root port.

use dmaspace_pci::{
    AcsCtrl, AcsState, Bdf, CpuInfo, CpuVendor, HostBridgeId, PciFunction, PciePortType, Topology,
    TopologyError,
};

/// Ice Lake-SP host bridge: on both Linux allowlists (no same-bridge flag).
const HOST_BRIDGE: (u16, u16) = (0x8086, 0x09a2);

/// The demo's default provider and client.
#[cfg(feature = "demo")]
pub(crate) const GPU0: Bdf = Bdf::new(0, 0x03, 0, 0);
#[cfg(feature = "demo")]
pub(crate) const NVME0: Bdf = Bdf::new(0, 0x05, 0, 0);

/// Builds the reference topology.
pub(crate) fn two_socket_server() -> Result<Topology, TopologyError> {
    let mut b = Topology::builder().cpu(CpuInfo::x86(CpuVendor::Intel, 6));
    for (bus, first_sec) in [(0x00u8, 0x01u8), (0x80, 0x81)] {
        let hb = HostBridgeId::new(0, bus);
        let on = |f: PciFunction| f.on_host_bridge(hb);
        let rp_a = Bdf::new(0, bus, 1, 0);
        let rp_b = Bdf::new(0, bus, 2, 0);
        let usp = Bdf::new(0, first_sec, 0, 0);
        let dsp: [Bdf; 3] = [0, 1, 2].map(|d| Bdf::new(0, first_sec + 1, d, 0));
        let no_redirect = AcsState::Control(AcsCtrl::empty());
        b = b
            .function(on(PciFunction::new(
                Bdf::new(0, bus, 0, 0),
                HOST_BRIDGE.0,
                HOST_BRIDGE.1,
            )
            .with_class(0x060000)))
            .function(on(PciFunction::new(rp_a, 0x8086, 0x347a)
                .with_port(PciePortType::RootPort)
                .with_acs(no_redirect)
                .with_class(0x060400)))
            .function(on(PciFunction::new(rp_b, 0x8086, 0x347b)
                .with_port(PciePortType::RootPort)
                .with_acs(no_redirect)
                .with_class(0x060400)))
            .function(on(PciFunction::new(usp, 0x1000, 0xc030)
                .with_port(PciePortType::UpstreamPort)
                .under(rp_a)
                .with_class(0x060400)));
        for d in dsp {
            b = b.function(on(PciFunction::new(d, 0x1000, 0xc030)
                .with_port(PciePortType::DownstreamPort)
                .with_acs(no_redirect)
                .under(usp)
                .with_class(0x060400)));
        }
        let ep = |bus_off: u8, vendor, device, class, parent| {
            on(
                PciFunction::new(Bdf::new(0, first_sec + bus_off, 0, 0), vendor, device)
                    .with_port(PciePortType::Endpoint)
                    .with_class(class)
                    .under(parent),
            )
        };
        b = b
            .function(ep(2, 0x10de, 0x2330, 0x030200, dsp[0])) // GPU (H100)
            .function(ep(3, 0x15b3, 0x101d, 0x020000, dsp[1])) // NIC (ConnectX-6 Dx)
            .function(ep(4, 0x144d, 0xa80a, 0x010802, dsp[2])) // NVMe behind the switch
            .function(ep(5, 0x144d, 0xa80a, 0x010802, rp_b)); // NVMe on its own root port
    }
    b.build()
}
