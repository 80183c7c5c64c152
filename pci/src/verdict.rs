//! The answer of `calc_map_type_and_dist()` for one pair: the route
//! ([`MapType`]), the distance, and what is known of ACS on the path.

use core::fmt;

use super::bdf::Bdf;

/// How a provider's memory reaches a client: the kernel's `enum pci_p2pdma_map_type`
/// (less `UNKNOWN`, which is the kernel's "not computed yet", and `NONE`, host memory).
///
/// ```
/// use dmaspace_pci::MapType;
/// assert_eq!(MapType::BusAddr.as_str(), "bus_addr");
/// assert_eq!(MapType::ThruHostBridge.to_string(), "thru_host_bridge");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MapType {
    /// `PCI_P2PDMA_MAP_BUS_ADDR`: through a switch, with PCI bus addresses.
    BusAddr,
    /// `PCI_P2PDMA_MAP_THRU_HOST_BRIDGE`: up through the root complex, mapped as MMIO.
    ThruHostBridge,
    /// `PCI_P2PDMA_MAP_NOT_SUPPORTED`.
    NotSupported,
}

impl MapType {
    /// `bus_addr`, `thru_host_bridge` or `not_supported`.
    ///
    /// ```
    /// use dmaspace_pci::MapType;
    /// assert_eq!(MapType::NotSupported.as_str(), "not_supported");
    /// ```
    #[must_use]
    pub const fn as_str(&self) -> &'static str {
        match self {
            Self::BusAddr => "bus_addr",
            Self::ThruHostBridge => "thru_host_bridge",
            Self::NotSupported => "not_supported",
        }
    }
}

impl fmt::Display for MapType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether the ACS control of every node on the path could be read, so that the
/// verdict is the kernel's for sure.
///
/// A non-root reader of sysfs sees only the first 64 bytes of config space, which do
/// not reach the ACS capability. [`Known`](Self::Known): every ACS register (and, for a
/// host-bridge route, the PCIe capability of the host bridge's first function) the
/// kernel would read was read. [`Unknown`](Self::Unknown): one of them was not, and it
/// could have changed the answer; [`Verdict::unknown_at`] names the function. The CLI
/// spells it `"acs": "known"` / `"unknown"`.
///
/// ```
/// use dmaspace_pci::PathAcs;
/// assert_eq!(PathAcs::Unknown.as_str(), "unknown");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PathAcs {
    /// Everything the kernel reads was read: the verdict is the kernel's.
    Known,
    /// Some register the kernel would read was not readable (see [`Verdict`]).
    Unknown,
}

impl PathAcs {
    /// `known` or `unknown`.
    ///
    /// ```
    /// use dmaspace_pci::PathAcs;
    /// assert_eq!(PathAcs::Known.as_str(), "known");
    /// ```
    #[must_use]
    pub const fn as_str(&self) -> &'static str {
        match self {
            Self::Known => "known",
            Self::Unknown => "unknown",
        }
    }
}

/// The answer for one (provider, client) pair of one topology snapshot.
///
/// With [`PathAcs::Known`], `map_type` and `distance` are exactly what Linux's
/// `calc_map_type_and_dist()` computes.
///
/// With [`PathAcs::Unknown`] the kernel's answer cannot be known: a node on the
/// path whose ACS the kernel would read is [`AcsState::Unknown`](super::AcsState::Unknown)
/// and no other node already redirects, or the host-bridge allowlist decision hangs on a
/// root-bus function whose PCIe capability was unreadable. Then `map_type` is always
/// [`MapType::NotSupported`] (so [`kernel_distance`](Self::kernel_distance) is -1 and no
/// route can be minted from it), `distance` still holds the hop count, and `unknown_at`
/// names the function whose config space was missing. A verdict never claims
/// [`MapType::BusAddr`] on unknown ACS. An unknown ACS that cannot change the answer
/// (no common upstream bridge; or a known redirect elsewhere on the path) leaves the
/// verdict `Known`.
///
/// ```
/// use dmaspace_pci::{Bdf, MapType, PciFunction, Policy, Topology};
/// let a = Bdf::new(0, 0, 3, 0);
/// let topo = Topology::builder().function(PciFunction::new(a, 0x1b36, 0x10)).build()?;
/// let v = topo.verdict(a, a, &Policy::default())?;
/// assert_eq!((v.map_type, v.distance, v.kernel_distance()), (MapType::BusAddr, 0, 0));
/// # Ok::<(), dmaspace_pci::TopologyError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Verdict {
    /// The provider (whose memory is used).
    pub provider: Bdf,
    /// The client (which does the DMA).
    pub client: Bdf,
    /// Generation of the topology it was computed on.
    pub generation: u64,
    /// The map type.
    pub map_type: MapType,
    /// Hops as the kernel counts them: from each side to the common upstream bridge,
    /// summed; with none, the lengths of both upstream chains, summed.
    pub distance: u32,
    /// Whether the answer is the kernel's for sure.
    pub acs: PathAcs,
    /// The common upstream bridge (the provider itself, for a same-device pair).
    pub common_upstream: Option<Bdf>,
    /// The first node with ACS redirect, in the kernel's order (provider side up to and
    /// including the common upstream bridge, then client side below it).
    pub acs_redirect: Option<Bdf>,
    /// The function whose unreadable config space made the verdict unknown.
    pub unknown_at: Option<Bdf>,
}

impl Verdict {
    /// What `pci_p2pdma_distance()` returns: -1 iff not supported, else the distance.
    ///
    /// ```
    /// use dmaspace_pci::{Bdf, PciFunction, Policy, Topology};
    /// let (e, f) = (Bdf::new(0, 0, 3, 0), Bdf::new(0, 0, 4, 0));
    /// let topo = Topology::builder()
    ///     .function(PciFunction::new(e, 0x1b36, 0x10))
    ///     .function(PciFunction::new(f, 0x1b36, 0x10))
    ///     .build()?;
    /// assert_eq!(topo.verdict(e, f, &Policy::default())?.kernel_distance(), -1);
    /// # Ok::<(), dmaspace_pci::TopologyError>(())
    /// ```
    #[must_use]
    pub fn kernel_distance(&self) -> i32 {
        match self.map_type {
            MapType::NotSupported => -1,
            _ => i32::try_from(self.distance).unwrap_or(i32::MAX),
        }
    }

    /// Whether the route goes through a switch with bus addresses.
    ///
    /// ```
    /// use dmaspace_pci::{Bdf, PciFunction, Policy, Topology};
    /// let a = Bdf::new(0, 0, 3, 0);
    /// let topo = Topology::builder().function(PciFunction::new(a, 1, 1)).build()?;
    /// assert!(topo.verdict(a, a, &Policy::default())?.is_bus_addr());
    /// # Ok::<(), dmaspace_pci::TopologyError>(())
    /// ```
    #[must_use]
    pub const fn is_bus_addr(&self) -> bool {
        matches!(self.map_type, MapType::BusAddr)
    }
}
