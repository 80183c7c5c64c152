//! One PCI function: its address, IDs, PCIe port type, ACS, upstream bridge and PF.

use super::bdf::{Bdf, HostBridgeId};
use super::registers::{AcsState, PcieKind, PciePortType};

/// One PCI function of a [`Topology`](crate::Topology).
///
/// Built with [`PciFunction::new`] and the `with_*`/[`under`](Self::under)/
/// [`vf_of`](Self::vf_of) setters, then handed to [`TopologyBuilder::function`](crate::TopologyBuilder::function).
///
/// ```
/// use dmaspace_pci::{AcsCtrl, AcsState, Bdf, PciFunction, PciePortType};
/// let rp = PciFunction::new(Bdf::new(0, 0, 2, 0), 0x1b36, 0x000c)
///     .with_class(0x060400)
///     .with_port(PciePortType::RootPort)
///     .with_acs(AcsState::Control(AcsCtrl::SV));
/// assert_eq!(rp.parent, None);
/// let nvme = PciFunction::new(Bdf::new(0, 1, 0, 0), 0x1b36, 0x0010).under(rp.bdf);
/// assert_eq!(nvme.parent, Some(rp.bdf));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PciFunction {
    /// Its address.
    pub bdf: Bdf,
    /// Vendor ID.
    pub vendor: u16,
    /// Device ID.
    pub device: u16,
    /// Class code (24 bits: class, subclass, prog-if).
    pub class: u32,
    /// PCIe port type.
    pub pcie: PcieKind,
    /// ACS control.
    pub acs: AcsState,
    /// The bridge whose secondary bus this function sits on; `None` on a root bus.
    /// For a VF this is informational only: the P2PDMA walk uses its PF's (see
    /// [`Topology::upstream_bridge`](crate::Topology::upstream_bridge)).
    pub parent: Option<Bdf>,
    /// The host bridge above it. For a function with a parent (or a VF) the builder
    /// overwrites it with the one inherited from the parent (or PF).
    pub host_bridge: HostBridgeId,
    /// For an SR-IOV VF, its PF (`physfn`).
    pub physfn: Option<Bdf>,
}

impl PciFunction {
    /// A function on the root bus `bdf.bus` of host bridge `pci{domain}:{bus}`, with no
    /// PCIe capability, no ACS, class 0.
    ///
    /// ```
    /// use dmaspace_pci::{Bdf, HostBridgeId, PciFunction};
    /// let f = PciFunction::new(Bdf::new(0, 0x80, 0, 0), 0x8086, 0x09a2);
    /// assert_eq!(f.host_bridge, HostBridgeId::new(0, 0x80));
    /// ```
    #[must_use]
    pub const fn new(bdf: Bdf, vendor: u16, device: u16) -> Self {
        Self {
            bdf,
            vendor,
            device,
            class: 0,
            pcie: PcieKind::NotPcie,
            acs: AcsState::Absent,
            parent: None,
            host_bridge: HostBridgeId::new(bdf.domain, bdf.bus),
            physfn: None,
        }
    }

    /// Sets the class code.
    ///
    /// ```
    /// use dmaspace_pci::{Bdf, PciFunction};
    /// assert_eq!(PciFunction::new(Bdf::new(0, 1, 0, 0), 1, 2).with_class(0x010802).class, 0x010802);
    /// ```
    #[must_use]
    pub const fn with_class(mut self, class: u32) -> Self {
        self.class = class;
        self
    }

    /// Makes it PCIe with this port type.
    ///
    /// ```
    /// use dmaspace_pci::{Bdf, PciFunction, PciePortType, PcieKind};
    /// let f = PciFunction::new(Bdf::new(0, 1, 0, 0), 1, 2).with_port(PciePortType::Endpoint);
    /// assert_eq!(f.pcie, PcieKind::Pcie(PciePortType::Endpoint));
    /// ```
    #[must_use]
    pub const fn with_port(mut self, port: PciePortType) -> Self {
        self.pcie = PcieKind::Pcie(port);
        self
    }

    /// Sets the PCIe kind (including [`PcieKind::Unknown`]).
    ///
    /// ```
    /// use dmaspace_pci::{Bdf, PciFunction, PcieKind};
    /// let f = PciFunction::new(Bdf::new(0, 1, 0, 0), 1, 2).with_pcie(PcieKind::Unknown);
    /// assert_eq!(f.pcie, PcieKind::Unknown);
    /// ```
    #[must_use]
    pub const fn with_pcie(mut self, pcie: PcieKind) -> Self {
        self.pcie = pcie;
        self
    }

    /// Sets the ACS state.
    ///
    /// ```
    /// use dmaspace_pci::{AcsState, Bdf, PciFunction};
    /// let f = PciFunction::new(Bdf::new(0, 1, 0, 0), 1, 2).with_acs(AcsState::Unknown);
    /// assert_eq!(f.acs, AcsState::Unknown);
    /// ```
    #[must_use]
    pub const fn with_acs(mut self, acs: AcsState) -> Self {
        self.acs = acs;
        self
    }

    /// Whether it is a bridge (a type-1 function: root port, switch port, PCI bridge),
    /// by its PCIe port type or, without one, its class code (`0x0604xx`, `0x0609xx`).
    ///
    /// ```
    /// use dmaspace_pci::{Bdf, PciFunction, PciePortType};
    /// let rp = PciFunction::new(Bdf::new(0, 0, 2, 0), 1, 1).with_port(PciePortType::RootPort);
    /// assert!(rp.is_bridge());
    /// assert!(PciFunction::new(Bdf::new(0, 0, 3, 0), 1, 1).with_class(0x060400).is_bridge());
    /// assert!(!PciFunction::new(Bdf::new(0, 0, 0, 0), 1, 1).with_class(0x060000).is_bridge());
    /// ```
    #[must_use]
    pub const fn is_bridge(&self) -> bool {
        matches!(
            self.pcie,
            PcieKind::Pcie(
                PciePortType::RootPort
                    | PciePortType::UpstreamPort
                    | PciePortType::DownstreamPort
                    | PciePortType::PcieToPciBridge
                    | PciePortType::PciToPcieBridge
            )
        ) || matches!(self.class >> 8, 0x0604 | 0x0609)
    }

    /// Places it on the secondary bus of bridge `parent`.
    ///
    /// ```
    /// use dmaspace_pci::{Bdf, PciFunction};
    /// let f = PciFunction::new(Bdf::new(0, 1, 0, 0), 1, 2).under(Bdf::new(0, 0, 2, 0));
    /// assert_eq!(f.parent, Some(Bdf::new(0, 0, 2, 0)));
    /// ```
    #[must_use]
    pub const fn under(mut self, parent: Bdf) -> Self {
        self.parent = Some(parent);
        self
    }

    /// Places it on the root bus of host bridge `hb` (e.g. one nested below a VMD function).
    ///
    /// ```
    /// use dmaspace_pci::{Bdf, HostBridgeId, PciFunction};
    /// let hb = HostBridgeId::new(0x10000, 0);
    /// let f = PciFunction::new(Bdf::new(0x10000, 0, 2, 0), 0x8086, 0x2030).on_host_bridge(hb);
    /// assert_eq!(f.host_bridge, hb);
    /// ```
    #[must_use]
    pub const fn on_host_bridge(mut self, hb: HostBridgeId) -> Self {
        self.host_bridge = hb;
        self
    }

    /// Makes it an SR-IOV VF of `pf`.
    ///
    /// ```
    /// use dmaspace_pci::{Bdf, PciFunction};
    /// let vf = PciFunction::new(Bdf::new(0, 3, 0, 2), 0x15b3, 0x101e).vf_of(Bdf::new(0, 3, 0, 0));
    /// assert_eq!(vf.physfn, Some(Bdf::new(0, 3, 0, 0)));
    /// ```
    #[must_use]
    pub const fn vf_of(mut self, pf: Bdf) -> Self {
        self.physfn = Some(pf);
        self
    }
}
