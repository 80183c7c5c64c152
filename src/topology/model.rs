//! The PCI tree: functions, their upstream bridges, host bridges, VFs, the CPU.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::fmt;

use super::bdf::{Bdf, HostBridgeId};

bitflags::bitflags! {
    /// The ACS control register (PCIe base spec, "ACS Control Register").
    ///
    /// Only [`AcsCtrl::REDIRECT`] (RR | CR | EC) matters to P2PDMA: the kernel's
    /// `pci_bridge_has_acs_redir()`.
    ///
    /// ```
    /// use dmaspace::topology::AcsCtrl;
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
    /// use dmaspace::topology::AcsCtrl;
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
/// use dmaspace::topology::{AcsCtrl, AcsState};
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
    /// use dmaspace::topology::AcsState;
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
/// use dmaspace::topology::PciePortType;
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
    /// use dmaspace::topology::PciePortType;
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
    /// use dmaspace::topology::PciePortType;
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
    /// use dmaspace::topology::PciePortType;
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
/// use dmaspace::topology::{PcieKind, PciePortType};
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
    /// use dmaspace::topology::PcieKind;
    /// assert!(!PcieKind::Unknown.is_root_port());
    /// ```
    #[must_use]
    pub const fn is_root_port(self) -> bool {
        matches!(self, Self::Pcie(PciePortType::RootPort))
    }
}

/// CPU vendor as `/proc/cpuinfo`'s `vendor_id` names it.
///
/// ```
/// use dmaspace::topology::CpuVendor;
/// assert_eq!(CpuVendor::from_vendor_id("AuthenticAMD"), CpuVendor::Amd);
/// assert_eq!(CpuVendor::from_vendor_id("HygonGenuine"), CpuVendor::Hygon);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CpuVendor {
    /// `AuthenticAMD`.
    Amd,
    /// `GenuineIntel`.
    Intel,
    /// `HygonGenuine` (a separate vendor to the kernel: not AMD for P2PDMA).
    Hygon,
    /// Anything else, or not known.
    Other,
}

impl CpuVendor {
    /// Maps a `vendor_id` string.
    ///
    /// ```
    /// use dmaspace::topology::CpuVendor;
    /// assert_eq!(CpuVendor::from_vendor_id("GenuineIntel"), CpuVendor::Intel);
    /// ```
    #[must_use]
    pub fn from_vendor_id(s: &str) -> Self {
        match s.trim() {
            "AuthenticAMD" => Self::Amd,
            "GenuineIntel" => Self::Intel,
            "HygonGenuine" => Self::Hygon,
            _ => Self::Other,
        }
    }
}

/// The CPU, as far as P2PDMA cares: the kernel's `cpu_supports_p2pdma()` is true only
/// on x86 for an AMD CPU of family 0x17 (Zen) or later.
///
/// ```
/// use dmaspace::topology::{CpuInfo, CpuVendor};
/// assert!(CpuInfo::x86(CpuVendor::Amd, 0x17).supports_p2pdma());
/// assert!(!CpuInfo::x86(CpuVendor::Amd, 0x15).supports_p2pdma());
/// assert!(!CpuInfo::x86(CpuVendor::Hygon, 0x18).supports_p2pdma());
/// assert!(!CpuInfo::x86(CpuVendor::Intel, 6).supports_p2pdma());
/// assert!(!CpuInfo::other().supports_p2pdma());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CpuInfo {
    /// Whether the machine is x86 (the AMD rule is `#ifdef CONFIG_X86`).
    pub x86: bool,
    /// The vendor.
    pub vendor: CpuVendor,
    /// `cpu family` (the kernel's `c->x86`, extended family included).
    pub family: u32,
}

impl CpuInfo {
    /// An x86 CPU.
    ///
    /// ```
    /// use dmaspace::topology::{CpuInfo, CpuVendor};
    /// assert_eq!(CpuInfo::x86(CpuVendor::Amd, 0x19).family, 0x19);
    /// ```
    #[must_use]
    pub const fn x86(vendor: CpuVendor, family: u32) -> Self {
        Self {
            x86: true,
            vendor,
            family,
        }
    }

    /// A non-x86 or unknown CPU: never takes the AMD path.
    ///
    /// ```
    /// use dmaspace::topology::CpuInfo;
    /// assert!(!CpuInfo::other().x86);
    /// ```
    #[must_use]
    pub const fn other() -> Self {
        Self {
            x86: false,
            vendor: CpuVendor::Other,
            family: 0,
        }
    }

    /// An AMD Zen (family 0x17) CPU, as QEMU's `-cpu EPYC`.
    ///
    /// ```
    /// use dmaspace::topology::CpuInfo;
    /// assert!(CpuInfo::amd_zen().supports_p2pdma());
    /// ```
    #[must_use]
    pub const fn amd_zen() -> Self {
        Self::x86(CpuVendor::Amd, 0x17)
    }

    /// The kernel's `cpu_supports_p2pdma()`.
    ///
    /// ```
    /// use dmaspace::topology::{CpuInfo, CpuVendor};
    /// assert!(CpuInfo::x86(CpuVendor::Amd, 0x1a).supports_p2pdma());
    /// ```
    #[must_use]
    pub const fn supports_p2pdma(&self) -> bool {
        self.x86 && matches!(self.vendor, CpuVendor::Amd) && self.family >= 0x17
    }
}

impl Default for CpuInfo {
    fn default() -> Self {
        Self::other()
    }
}

/// One PCI function of a [`Topology`].
///
/// Built with [`PciFunction::new`] and the `with_*`/[`under`](Self::under)/
/// [`vf_of`](Self::vf_of) setters, then handed to [`TopologyBuilder::function`].
///
/// ```
/// use dmaspace::topology::{AcsCtrl, AcsState, Bdf, PciFunction, PciePortType};
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
    /// [`Topology::upstream_bridge`]).
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
    /// use dmaspace::topology::{Bdf, HostBridgeId, PciFunction};
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
    /// use dmaspace::topology::{Bdf, PciFunction};
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
    /// use dmaspace::topology::{Bdf, PciFunction, PciePortType, PcieKind};
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
    /// use dmaspace::topology::{Bdf, PciFunction, PcieKind};
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
    /// use dmaspace::topology::{AcsState, Bdf, PciFunction};
    /// let f = PciFunction::new(Bdf::new(0, 1, 0, 0), 1, 2).with_acs(AcsState::Unknown);
    /// assert_eq!(f.acs, AcsState::Unknown);
    /// ```
    #[must_use]
    pub const fn with_acs(mut self, acs: AcsState) -> Self {
        self.acs = acs;
        self
    }

    /// Places it on the secondary bus of bridge `parent`.
    ///
    /// ```
    /// use dmaspace::topology::{Bdf, PciFunction};
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
    /// use dmaspace::topology::{Bdf, HostBridgeId, PciFunction};
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
    /// use dmaspace::topology::{Bdf, PciFunction};
    /// let vf = PciFunction::new(Bdf::new(0, 3, 0, 2), 0x15b3, 0x101e).vf_of(Bdf::new(0, 3, 0, 0));
    /// assert_eq!(vf.physfn, Some(Bdf::new(0, 3, 0, 0)));
    /// ```
    #[must_use]
    pub const fn vf_of(mut self, pf: Bdf) -> Self {
        self.physfn = Some(pf);
        self
    }
}

/// A host bridge and, when it sits below a PCI function (Intel VMD), that function.
///
/// ```
/// use dmaspace::topology::{Bdf, HostBridge, HostBridgeId};
/// let hb = HostBridge { id: HostBridgeId::new(0x10000, 0), below: Some(Bdf::new(0, 0, 0x0e, 0)) };
/// assert_eq!(hb.id.to_string(), "pci10000:00");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct HostBridge {
    /// Its id.
    pub id: HostBridgeId,
    /// The PCI function whose sysfs directory holds it (VMD), if any.
    pub below: Option<Bdf>,
}

/// Something wrong with a topology or a question asked of it.
///
/// ```
/// use dmaspace::topology::{Bdf, Policy, Topology, TopologyError};
/// let topo = Topology::builder().build()?;
/// let a = Bdf::new(0, 1, 0, 0);
/// assert_eq!(topo.verdict(a, a, &Policy::default()), Err(TopologyError::UnknownFunction(a)));
/// # Ok::<(), TopologyError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TopologyError {
    /// No function with this address.
    UnknownFunction(Bdf),
    /// Two functions with one address.
    DuplicateFunction(Bdf),
    /// `child` names `parent` as its upstream bridge, but there is no such function.
    MissingParent {
        /// The function.
        child: Bdf,
        /// The bridge it names.
        parent: Bdf,
    },
    /// `vf` names `pf` as its PF, but there is no such function, or it is itself a VF.
    BadPhysfn {
        /// The VF.
        vf: Bdf,
        /// The PF it names.
        pf: Bdf,
    },
    /// Following upstream bridges from this function comes back to it.
    Cycle(Bdf),
    /// A host bridge is declared below a function that does not exist.
    MissingVmdFunction(Bdf),
}

impl fmt::Display for TopologyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownFunction(b) => write!(f, "no PCI function {b} in the topology"),
            Self::DuplicateFunction(b) => write!(f, "PCI function {b} given twice"),
            Self::MissingParent { child, parent } => {
                write!(
                    f,
                    "{child} sits below {parent}, which is not in the topology"
                )
            }
            Self::BadPhysfn { vf, pf } => {
                write!(
                    f,
                    "{vf} names {pf} as its PF, which is missing or itself a VF"
                )
            }
            Self::Cycle(b) => write!(f, "the upstream bridges of {b} form a cycle"),
            Self::MissingVmdFunction(b) => {
                write!(
                    f,
                    "a host bridge sits below {b}, which is not in the topology"
                )
            }
        }
    }
}

impl core::error::Error for TopologyError {}

#[cfg(target_has_atomic = "64")]
fn next_generation() -> u64 {
    use core::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

#[cfg(not(target_has_atomic = "64"))]
fn next_generation() -> u64 {
    use core::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed) as u64
}

/// A snapshot of a PCI tree and the CPU: what the kernel's P2PDMA code looks at.
///
/// Built with [`Topology::builder`] or loaded with `sysfs::load` (feature `std`).
/// Every snapshot carries a [`generation`](Self::generation): a number drawn from a
/// process-wide counter when it is built and again on every mutation, so two
/// `Topology` values with one generation have the same content (a clone keeps the
/// number until either copy changes).
///
/// ```
/// use dmaspace::topology::{Bdf, CpuInfo, PciFunction, Topology};
/// let mut topo = Topology::builder()
///     .function(PciFunction::new(Bdf::new(0, 0, 0, 0), 0x8086, 0x29c0))
///     .build()?;
/// let g = topo.generation();
/// topo.set_cpu(CpuInfo::amd_zen());
/// assert_ne!(topo.generation(), g);
/// assert_eq!(topo.functions().count(), 1);
/// # Ok::<(), dmaspace::topology::TopologyError>(())
/// ```
#[derive(Clone, Debug)]
pub struct Topology {
    pub(crate) functions: BTreeMap<Bdf, PciFunction>,
    pub(crate) host_bridges: BTreeMap<HostBridgeId, HostBridge>,
    pub(crate) cpu: CpuInfo,
    pub(crate) generation: u64,
}

impl Topology {
    /// Starts building a topology.
    ///
    /// ```
    /// use dmaspace::topology::Topology;
    /// let topo = Topology::builder().build()?;
    /// assert_eq!(topo.functions().count(), 0);
    /// # Ok::<(), dmaspace::topology::TopologyError>(())
    /// ```
    #[must_use]
    pub fn builder() -> TopologyBuilder {
        TopologyBuilder::default()
    }

    /// All functions, in [`Bdf`] order.
    ///
    /// ```
    /// use dmaspace::topology::{Bdf, PciFunction, Topology};
    /// let topo = Topology::builder()
    ///     .function(PciFunction::new(Bdf::new(0, 0, 3, 0), 1, 1))
    ///     .function(PciFunction::new(Bdf::new(0, 0, 2, 0), 1, 1))
    ///     .build()?;
    /// let bdfs: Vec<_> = topo.functions().map(|f| f.bdf.to_string()).collect();
    /// assert_eq!(bdfs, ["0000:00:02.0", "0000:00:03.0"]);
    /// # Ok::<(), dmaspace::topology::TopologyError>(())
    /// ```
    pub fn functions(&self) -> impl Iterator<Item = &PciFunction> {
        self.functions.values()
    }

    /// The function at `bdf`.
    ///
    /// ```
    /// use dmaspace::topology::{Bdf, PciFunction, Topology};
    /// let bdf = Bdf::new(0, 0, 3, 0);
    /// let topo = Topology::builder().function(PciFunction::new(bdf, 0x1b36, 0x10)).build()?;
    /// assert_eq!(topo.function(bdf).map(|f| f.device), Some(0x10));
    /// assert!(topo.function(Bdf::new(0, 0, 4, 0)).is_none());
    /// # Ok::<(), dmaspace::topology::TopologyError>(())
    /// ```
    #[must_use]
    pub fn function(&self, bdf: Bdf) -> Option<&PciFunction> {
        self.functions.get(&bdf)
    }

    /// All host bridges, in id order.
    ///
    /// ```
    /// use dmaspace::topology::{Bdf, PciFunction, Topology};
    /// let topo = Topology::builder().function(PciFunction::new(Bdf::new(0, 0x80, 0, 0), 1, 1)).build()?;
    /// assert_eq!(topo.host_bridges().next().map(|h| h.id.to_string()), Some("pci0000:80".into()));
    /// # Ok::<(), dmaspace::topology::TopologyError>(())
    /// ```
    pub fn host_bridges(&self) -> impl Iterator<Item = &HostBridge> {
        self.host_bridges.values()
    }

    /// The CPU.
    ///
    /// ```
    /// use dmaspace::topology::{CpuInfo, Topology};
    /// let topo = Topology::builder().cpu(CpuInfo::amd_zen()).build()?;
    /// assert_eq!(topo.cpu(), CpuInfo::amd_zen());
    /// # Ok::<(), dmaspace::topology::TopologyError>(())
    /// ```
    #[must_use]
    pub const fn cpu(&self) -> CpuInfo {
        self.cpu
    }

    /// The snapshot's generation: unique per build and per mutation, process-wide.
    ///
    /// ```
    /// use dmaspace::topology::Topology;
    /// let a = Topology::builder().build()?;
    /// let b = Topology::builder().build()?;
    /// assert_ne!(a.generation(), b.generation());
    /// assert_eq!(a.clone().generation(), a.generation());
    /// # Ok::<(), dmaspace::topology::TopologyError>(())
    /// ```
    #[must_use]
    pub const fn generation(&self) -> u64 {
        self.generation
    }

    /// The kernel's `pci_upstream_bridge()`: for a VF, its PF's upstream bridge; `None`
    /// on a root bus. Errors if `bdf` is not in the topology.
    ///
    /// ```
    /// use dmaspace::topology::{Bdf, PciFunction, Topology};
    /// let rp = Bdf::new(0, 0, 2, 0);
    /// let pf = Bdf::new(0, 1, 0, 0);
    /// let vf = Bdf::new(0, 1, 0, 1);
    /// let topo = Topology::builder()
    ///     .function(PciFunction::new(rp, 1, 1))
    ///     .function(PciFunction::new(pf, 1, 2).under(rp))
    ///     .function(PciFunction::new(vf, 1, 3).vf_of(pf))
    ///     .build()?;
    /// assert_eq!(topo.upstream_bridge(vf)?, Some(rp));
    /// assert_eq!(topo.upstream_bridge(rp)?, None);
    /// # Ok::<(), dmaspace::topology::TopologyError>(())
    /// ```
    pub fn upstream_bridge(&self, bdf: Bdf) -> Result<Option<Bdf>, TopologyError> {
        let f = self
            .functions
            .get(&bdf)
            .ok_or(TopologyError::UnknownFunction(bdf))?;
        let base = match f.physfn {
            Some(pf) => self
                .functions
                .get(&pf)
                .ok_or(TopologyError::BadPhysfn { vf: bdf, pf })?,
            None => f,
        };
        Ok(base.parent)
    }

    /// The kernel's `pci_host_bridge_dev()`: the first function on the host bridge's root
    /// bus, if it is devfn 00.0 or a Root Port. "First" is the order the kernel scans in:
    /// physical functions by devfn, then VFs by devfn. The second value is `true` when the
    /// answer is not known because the first function's PCIe capability could not be read.
    ///
    /// ```
    /// use dmaspace::topology::{Bdf, HostBridgeId, PciFunction, PciePortType, Topology};
    /// let topo = Topology::builder()
    ///     .function(PciFunction::new(Bdf::new(0, 0, 1, 0), 0x8086, 0x2030).with_port(PciePortType::RootPort))
    ///     .build()?;
    /// let (dev, unknown) = topo.host_bridge_dev(HostBridgeId::new(0, 0));
    /// assert_eq!(dev.map(|f| f.device), Some(0x2030));
    /// assert!(!unknown);
    /// # Ok::<(), dmaspace::topology::TopologyError>(())
    /// ```
    #[must_use]
    pub fn host_bridge_dev(&self, hb: HostBridgeId) -> (Option<&PciFunction>, bool) {
        match self.first_on_root_bus(hb) {
            None => (None, false),
            Some(f) if f.bdf.devfn() == 0 => (Some(f), false),
            Some(f) if f.pcie.is_root_port() => (Some(f), false),
            Some(f) if f.pcie == PcieKind::Unknown => (None, true),
            Some(_) => (None, false),
        }
    }

    /// The first function on the root bus of `hb` in kernel scan order (physical
    /// functions by devfn, then VFs by devfn), whatever it is.
    ///
    /// ```
    /// use dmaspace::topology::{Bdf, HostBridgeId, PciFunction, Topology};
    /// let topo = Topology::builder()
    ///     .function(PciFunction::new(Bdf::new(0, 0, 3, 0), 1, 3))
    ///     .function(PciFunction::new(Bdf::new(0, 0, 1, 0), 1, 1))
    ///     .build()?;
    /// assert_eq!(topo.first_on_root_bus(HostBridgeId::new(0, 0)).map(|f| f.device), Some(1));
    /// # Ok::<(), dmaspace::topology::TopologyError>(())
    /// ```
    #[must_use]
    pub fn first_on_root_bus(&self, hb: HostBridgeId) -> Option<&PciFunction> {
        self.functions
            .values()
            .filter(|f| {
                f.host_bridge == hb
                    && f.bdf.bus == hb.bus
                    && matches!(self.upstream_bridge(f.bdf), Ok(None))
            })
            .min_by_key(|f| (f.physfn.is_some(), f.bdf.devfn()))
    }

    /// Sets the ACS state of one function (as `setpci` or `pci=config_acs=` would) and
    /// takes a new generation.
    ///
    /// ```
    /// use dmaspace::topology::{AcsCtrl, AcsState, Bdf, PciFunction, Topology};
    /// let bdf = Bdf::new(0, 0, 2, 0);
    /// let mut topo = Topology::builder().function(PciFunction::new(bdf, 1, 1)).build()?;
    /// let g = topo.generation();
    /// topo.set_acs(bdf, AcsState::Control(AcsCtrl::RR))?;
    /// assert!(topo.generation() > g);
    /// # Ok::<(), dmaspace::topology::TopologyError>(())
    /// ```
    pub fn set_acs(&mut self, bdf: Bdf, acs: AcsState) -> Result<(), TopologyError> {
        let f = self
            .functions
            .get_mut(&bdf)
            .ok_or(TopologyError::UnknownFunction(bdf))?;
        f.acs = acs;
        self.generation = next_generation();
        Ok(())
    }

    /// Replaces the CPU and takes a new generation.
    ///
    /// ```
    /// use dmaspace::topology::{CpuInfo, Topology};
    /// let mut topo = Topology::builder().build()?;
    /// topo.set_cpu(CpuInfo::amd_zen());
    /// assert!(topo.cpu().supports_p2pdma());
    /// # Ok::<(), dmaspace::topology::TopologyError>(())
    /// ```
    pub fn set_cpu(&mut self, cpu: CpuInfo) {
        self.cpu = cpu;
        self.generation = next_generation();
    }
}

/// Builds a [`Topology`]; see [`Topology::builder`].
///
/// ```
/// use dmaspace::topology::{Bdf, CpuInfo, HostBridgeId, PciFunction, PciePortType, Topology};
/// let vmd = Bdf::new(0, 0, 0x0e, 0);
/// let topo = Topology::builder()
///     .cpu(CpuInfo::amd_zen())
///     .function(PciFunction::new(vmd, 0x8086, 0x467f))
///     .host_bridge_below(HostBridgeId::new(0x10000, 0), vmd)
///     .function(PciFunction::new(Bdf::new(0x10000, 0, 2, 0), 0x8086, 0x2030).with_port(PciePortType::RootPort))
///     .build()?;
/// assert_eq!(topo.host_bridges().count(), 2);
/// # Ok::<(), dmaspace::topology::TopologyError>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct TopologyBuilder {
    functions: Vec<PciFunction>,
    nested: Vec<(HostBridgeId, Bdf)>,
    cpu: CpuInfo,
}

impl TopologyBuilder {
    /// Adds a function.
    ///
    /// ```
    /// use dmaspace::topology::{Bdf, PciFunction, Topology};
    /// let topo = Topology::builder().function(PciFunction::new(Bdf::new(0, 0, 0, 0), 1, 1)).build()?;
    /// assert_eq!(topo.functions().count(), 1);
    /// # Ok::<(), dmaspace::topology::TopologyError>(())
    /// ```
    #[must_use]
    pub fn function(mut self, f: PciFunction) -> Self {
        self.functions.push(f);
        self
    }

    /// Adds a function in place (for loops).
    ///
    /// ```
    /// use dmaspace::topology::{Bdf, PciFunction, Topology};
    /// let mut b = Topology::builder();
    /// for dev in 0..4 {
    ///     b.push(PciFunction::new(Bdf::new(0, 0, dev, 0), 1, 1));
    /// }
    /// assert_eq!(b.build()?.functions().count(), 4);
    /// # Ok::<(), dmaspace::topology::TopologyError>(())
    /// ```
    pub fn push(&mut self, f: PciFunction) -> &mut Self {
        self.functions.push(f);
        self
    }

    /// Declares that host bridge `hb` sits below PCI function `below` (Intel VMD).
    ///
    /// ```
    /// use dmaspace::topology::{Bdf, HostBridgeId, PciFunction, Topology};
    /// let vmd = Bdf::new(0, 0, 0x0e, 0);
    /// let topo = Topology::builder()
    ///     .function(PciFunction::new(vmd, 0x8086, 0x467f))
    ///     .host_bridge_below(HostBridgeId::new(0x10000, 0), vmd)
    ///     .build()?;
    /// assert!(topo.host_bridges().any(|h| h.below == Some(vmd)));
    /// # Ok::<(), dmaspace::topology::TopologyError>(())
    /// ```
    #[must_use]
    pub fn host_bridge_below(mut self, hb: HostBridgeId, below: Bdf) -> Self {
        self.nested.push((hb, below));
        self
    }

    /// Sets the CPU (default: [`CpuInfo::other`]).
    ///
    /// ```
    /// use dmaspace::topology::{CpuInfo, Topology};
    /// assert!(Topology::builder().cpu(CpuInfo::amd_zen()).build()?.cpu().supports_p2pdma());
    /// # Ok::<(), dmaspace::topology::TopologyError>(())
    /// ```
    #[must_use]
    pub fn cpu(mut self, cpu: CpuInfo) -> Self {
        self.cpu = cpu;
        self
    }

    /// Checks and freezes the tree: addresses unique, parents and PFs present, a PF not
    /// itself a VF, no cycles. Host bridges are inherited from parent (or PF) to child.
    ///
    /// ```
    /// use dmaspace::topology::{Bdf, PciFunction, Topology, TopologyError};
    /// let a = Bdf::new(0, 1, 0, 0);
    /// let err = Topology::builder().function(PciFunction::new(a, 1, 1).under(a)).build();
    /// assert_eq!(err.err(), Some(TopologyError::Cycle(a)));
    /// ```
    pub fn build(&self) -> Result<Topology, TopologyError> {
        let mut functions = BTreeMap::new();
        for f in &self.functions {
            if functions.insert(f.bdf, *f).is_some() {
                return Err(TopologyError::DuplicateFunction(f.bdf));
            }
        }
        for f in functions.values() {
            if let Some(p) = f.parent {
                if !functions.contains_key(&p) {
                    return Err(TopologyError::MissingParent {
                        child: f.bdf,
                        parent: p,
                    });
                }
            }
            if let Some(pf) = f.physfn {
                match functions.get(&pf) {
                    Some(p) if p.physfn.is_none() && pf != f.bdf => {}
                    _ => return Err(TopologyError::BadPhysfn { vf: f.bdf, pf }),
                }
            }
        }
        // Resolve host bridges top-down, detecting cycles with a step bound.
        let n = functions.len();
        let keys: Vec<Bdf> = functions.keys().copied().collect();
        let mut resolved: BTreeMap<Bdf, HostBridgeId> = BTreeMap::new();
        for &start in &keys {
            let mut cur = start;
            let mut steps = 0usize;
            let hb = loop {
                if let Some(hb) = resolved.get(&cur) {
                    break *hb;
                }
                let f = functions
                    .get(&cur)
                    .ok_or(TopologyError::UnknownFunction(cur))?;
                let next = match (f.parent, f.physfn) {
                    (Some(p), _) => Some(p),
                    (None, Some(pf)) => Some(pf),
                    (None, None) => None,
                };
                match next {
                    None => break f.host_bridge,
                    Some(p) => cur = p,
                }
                steps += 1;
                if steps > n {
                    return Err(TopologyError::Cycle(start));
                }
            };
            resolved.insert(start, hb);
        }
        for (bdf, hb) in &resolved {
            if let Some(f) = functions.get_mut(bdf) {
                f.host_bridge = *hb;
            }
        }
        let mut host_bridges = BTreeMap::new();
        for f in functions.values() {
            host_bridges.insert(
                f.host_bridge,
                HostBridge {
                    id: f.host_bridge,
                    below: None,
                },
            );
        }
        for &(hb, below) in &self.nested {
            if !functions.contains_key(&below) {
                return Err(TopologyError::MissingVmdFunction(below));
            }
            host_bridges.insert(
                hb,
                HostBridge {
                    id: hb,
                    below: Some(below),
                },
            );
        }
        Ok(Topology {
            functions,
            host_bridges,
            cpu: self.cpu,
            generation: next_generation(),
        })
    }
}
