//! Config-space registers the P2PDMA rules read: ACS control, the PCIe port type.

bitflags::bitflags! {
    /// The ACS control register (PCIe base spec, "ACS Control Register").
    ///
    /// Only [`AcsCtrl::REDIRECT`] (RR | CR | EC) matters to P2PDMA: the kernel's
    /// `pci_bridge_has_acs_redir()`.
    ///
    /// ```
    /// use dmaspace_pci::AcsCtrl;
    /// let ctrl = AcsCtrl::SV | AcsCtrl::RR;
    /// assert!(ctrl.redirects());
    /// assert!(!AcsCtrl::SV.redirects());
    /// assert!(AcsCtrl::from_bits_retain(0x20).redirects()); // Egress Control
    /// ```
    #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
    pub struct AcsCtrl: u16 {
        /// Source Validation.
        const SV = 0x0001;
        /// Translation Blocking.
        const TB = 0x0002;
        /// P2P Request Redirect.
        const RR = 0x0004;
        /// P2P Completion Redirect.
        const CR = 0x0008;
        /// Upstream Forwarding.
        const UF = 0x0010;
        /// P2P Egress Control.
        const EC = 0x0020;
        /// Direct Translated P2P.
        const DT = 0x0040;
        /// The bits that make the kernel route P2P through the host bridge.
        const REDIRECT = 0x0004 | 0x0008 | 0x0020;
    }
}

impl AcsCtrl {
    /// Whether RR, CR or EC is set: the kernel's `pci_bridge_has_acs_redir()`.
    ///
    /// ```
    /// use dmaspace_pci::AcsCtrl;
    /// assert!(AcsCtrl::CR.redirects());
    /// ```
    #[must_use]
    pub const fn redirects(self) -> bool {
        self.intersects(Self::REDIRECT)
    }
}

/// What is known of a function's ACS capability.
///
/// ```
/// use dmaspace_pci::{AcsCtrl, AcsState};
/// assert_eq!(AcsState::Absent.redirects(), Some(false));
/// assert_eq!(AcsState::Control(AcsCtrl::RR).redirects(), Some(true));
/// assert_eq!(AcsState::Unknown.redirects(), None);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum AcsState {
    /// No ACS capability: never redirects.
    #[default]
    Absent,
    /// The capability is there; this is its control register.
    Control(AcsCtrl),
    /// Config space could not be read far enough (a non-root reader sees 64 bytes).
    Unknown,
}

impl AcsState {
    /// `Some(redirects)` when known, `None` when not.
    ///
    /// ```
    /// use dmaspace_pci::AcsState;
    /// assert_eq!(AcsState::Unknown.redirects(), None);
    /// ```
    #[must_use]
    pub const fn redirects(self) -> Option<bool> {
        match self {
            Self::Absent => Some(false),
            Self::Control(c) => Some(c.redirects()),
            Self::Unknown => None,
        }
    }
}

/// The device/port type field of the PCIe capability (bits 7:4 of the PCIe
/// capabilities register), `PCI_EXP_TYPE_*`.
///
/// ```
/// use dmaspace_pci::PciePortType;
/// assert_eq!(PciePortType::from_raw(4), PciePortType::RootPort);
/// assert_eq!(PciePortType::RootPort.raw(), 4);
/// assert_eq!(PciePortType::from_raw(0xc), PciePortType::Other(0xc));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PciePortType {
    /// 0: PCIe endpoint.
    Endpoint,
    /// 1: legacy endpoint.
    LegacyEndpoint,
    /// 4: root port.
    RootPort,
    /// 5: switch upstream port.
    UpstreamPort,
    /// 6: switch downstream port.
    DownstreamPort,
    /// 7: PCIe-to-PCI/PCI-X bridge.
    PcieToPciBridge,
    /// 8: PCI/PCI-X-to-PCIe bridge.
    PciToPcieBridge,
    /// 9: root complex integrated endpoint.
    RcEndpoint,
    /// 10: root complex event collector.
    RcEventCollector,
    /// Any other value.
    Other(u8),
}

impl PciePortType {
    /// Decodes the 4-bit field.
    ///
    /// ```
    /// use dmaspace_pci::PciePortType;
    /// assert_eq!(PciePortType::from_raw(6), PciePortType::DownstreamPort);
    /// ```
    #[must_use]
    pub const fn from_raw(v: u8) -> Self {
        match v & 0xf {
            0 => Self::Endpoint,
            1 => Self::LegacyEndpoint,
            4 => Self::RootPort,
            5 => Self::UpstreamPort,
            6 => Self::DownstreamPort,
            7 => Self::PcieToPciBridge,
            8 => Self::PciToPcieBridge,
            9 => Self::RcEndpoint,
            10 => Self::RcEventCollector,
            other => Self::Other(other),
        }
    }

    /// The 4-bit field value.
    ///
    /// ```
    /// use dmaspace_pci::PciePortType;
    /// assert_eq!(PciePortType::UpstreamPort.raw(), 5);
    /// ```
    #[must_use]
    pub const fn raw(self) -> u8 {
        match self {
            Self::Endpoint => 0,
            Self::LegacyEndpoint => 1,
            Self::RootPort => 4,
            Self::UpstreamPort => 5,
            Self::DownstreamPort => 6,
            Self::PcieToPciBridge => 7,
            Self::PciToPcieBridge => 8,
            Self::RcEndpoint => 9,
            Self::RcEventCollector => 10,
            Self::Other(v) => v & 0xf,
        }
    }

    /// A short snake-case name (`root_port`, `endpoint`, ...).
    ///
    /// ```
    /// use dmaspace_pci::PciePortType;
    /// assert_eq!(PciePortType::RcEndpoint.as_str(), "rc_endpoint");
    /// ```
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Endpoint => "endpoint",
            Self::LegacyEndpoint => "legacy_endpoint",
            Self::RootPort => "root_port",
            Self::UpstreamPort => "upstream_port",
            Self::DownstreamPort => "downstream_port",
            Self::PcieToPciBridge => "pcie_to_pci_bridge",
            Self::PciToPcieBridge => "pci_to_pcie_bridge",
            Self::RcEndpoint => "rc_endpoint",
            Self::RcEventCollector => "rc_event_collector",
            Self::Other(_) => "other",
        }
    }
}

/// Whether a function is PCIe, and as what.
///
/// ```
/// use dmaspace_pci::{PcieKind, PciePortType};
/// assert!(PcieKind::Pcie(PciePortType::RootPort).is_root_port());
/// assert!(!PcieKind::NotPcie.is_root_port());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum PcieKind {
    /// No PCIe capability (conventional PCI, e.g. a q35 MCH at 00:00.0).
    #[default]
    NotPcie,
    /// PCIe, with this port type.
    Pcie(PciePortType),
    /// The capability list could not be read far enough.
    Unknown,
}

impl PcieKind {
    /// `pci_pcie_type(dev) == PCI_EXP_TYPE_ROOT_PORT` (false when unknown).
    ///
    /// ```
    /// use dmaspace_pci::PcieKind;
    /// assert!(!PcieKind::Unknown.is_root_port());
    /// ```
    #[must_use]
    pub const fn is_root_port(self) -> bool {
        matches!(self, Self::Pcie(PciePortType::RootPort))
    }
}
