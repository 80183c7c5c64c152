//! Route witnesses: proof that provider `PB`'s memory reaches client `B`,
//! and by which path. The mappers require one for every P2P segment.
//!
//! A route is what `calc_map_type_and_dist()` decides, turned into a type:
//! [`ViaSwitch`] (the kernel's `PCI_P2PDMA_MAP_BUS_ADDR`) is the only way to
//! mint a [`BusAddr`] from P2P memory, [`SameDevice`] the only way to mint a
//! [`BarOffset`], and [`ViaHostBridge`] (`PCI_P2PDMA_MAP_THRU_HOST_BRIDGE`)
//! maps P2P memory like MMIO through the client's IOMMU.

use core::fmt;
use core::marker::PhantomData;

use crate::addr::{BarOffset, BusAddr, BusOffset, PhysAddr};
use crate::brand::Brand;
use crate::device::Device;
use crate::provider::{Provider, bar_offset};
use crate::vec::P2pSeg;

mod sealed {
    pub trait Sealed {}
}

/// The kind of path a [`Route`] takes: [`ViaSwitch`], [`ViaHostBridge`] or [`SameDevice`].
pub trait RouteKind: sealed::Sealed + 'static {
    /// The kernel's name of the map type (`bus_addr`, `thru_host_bridge`).
    const KERNEL_NAME: &'static str;
}

/// Provider and client share an upstream switch port and no ACS redirect
/// lies on the way: bus addresses, IOMMU bypassed, nothing to unmap.
#[derive(Debug)]
pub enum ViaSwitch {}
/// The transaction goes up to the host bridge, which forwards it: mapped
/// like MMIO through the client's IOMMU (never bounced, never cache-synced).
#[derive(Debug)]
pub enum ViaHostBridge {}
/// Provider and client are the same device: the memory is the client's own
/// BAR and is addressed by offset; nothing goes on the wire.
#[derive(Debug)]
pub enum SameDevice {}

impl sealed::Sealed for ViaSwitch {}
impl sealed::Sealed for ViaHostBridge {}
impl sealed::Sealed for SameDevice {}
impl RouteKind for ViaSwitch {
    const KERNEL_NAME: &'static str = "bus_addr";
}
impl RouteKind for ViaHostBridge {
    const KERNEL_NAME: &'static str = "thru_host_bridge";
}
impl RouteKind for SameDevice {
    const KERNEL_NAME: &'static str = "bus_addr";
}

/// A route of kind `K` from provider `PB` to client `B`, valid while the
/// topology snapshot it came from (`'t`) is borrowed.
pub struct Route<'t, PB: Brand, B: Brand, K: RouteKind> {
    distance: u32,
    bus_offset: BusOffset,
    bar: u8,
    bar_cpu_start: PhysAddr,
    _witness: Witness<'t, PB, B, K>,
}

/// Ties a route to its snapshot, pair and kind without owning any of them.
type Witness<'t, PB, B, K> = PhantomData<(&'t (), fn() -> (PB, B, K))>;

impl<PB: Brand, B: Brand, K: RouteKind> Route<'_, PB, B, K> {
    fn new(provider: &Provider<PB>, distance: u32) -> Self {
        Self {
            distance,
            bus_offset: provider.bus_offset(),
            bar: provider.bar(),
            bar_cpu_start: provider.cpu_start(),
            _witness: PhantomData,
        }
    }

    /// The kernel's distance for this pair (`pci_p2pdma_distance()`).
    ///
    /// See the crate-level example.
    #[must_use]
    pub fn distance(&self) -> u32 {
        self.distance
    }
}

impl<PB: Brand, B: Brand> Route<'static, PB, B, ViaSwitch> {
    /// A switch route the caller vouches for, without a topology (kernel
    /// code that already ran `pci_p2pdma_distance()`, a fixed embedded
    /// board).
    ///
    /// # Safety
    /// Provider and client must sit below one PCIe switch port with no ACS
    /// redirect on the path (the kernel's `PCI_P2PDMA_MAP_BUS_ADDR`), for as
    /// long as the route is used: otherwise the bus addresses this route
    /// mints are routed upstream, where the IOMMU may send them anywhere.
    ///
    /// ```
    /// # use dmaspace::{device::Device, provider::Provider, route::Route, topology::Bdf, BusAddr, PhysAddr};
    /// dmaspace::brand!(Cmb);
    /// dmaspace::brand!(Nic);
    /// # // SAFETY: example values.
    /// # let cmb = unsafe { Provider::<Cmb>::new(Bdf::new(0, 3, 0, 0), 2, PhysAddr::new(0x4000_0000), BusAddr::new_unchecked(0), 1 << 20)? };
    /// let nic = Device::<Nic>::new(Bdf::new(0, 4, 0, 0), u64::MAX)?;
    /// // SAFETY: both sit below the same switch on this board, ACS off.
    /// let route = unsafe { Route::assume_via_switch(&cmb, &nic, 4) };
    /// let a = cmb.alloc(4096)?;
    /// assert_eq!(route.bus_addr(&a.seg()).as_u64(), 0); // phys 0x4000_0000 + offset -0x4000_0000
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub unsafe fn assume_via_switch(
        provider: &Provider<PB>,
        _client: &Device<B>,
        distance: u32,
    ) -> Self {
        Self::new(provider, distance)
    }
}

impl<PB: Brand, B: Brand> Route<'static, PB, B, ViaHostBridge> {
    /// A host-bridge route the caller vouches for, without a topology.
    ///
    /// # Safety
    /// The host bridge must forward P2P transactions between the two
    /// devices (AMD Zen, or an allowlisted bridge), for as long as the
    /// route is used; otherwise the transaction is dropped or misrouted.
    ///
    /// ```
    /// # use dmaspace::{device::Device, provider::Provider, route::Route, topology::Bdf, BusAddr, PhysAddr};
    /// # dmaspace::brand!(Cmb);
    /// # dmaspace::brand!(Nic);
    /// # // SAFETY: example values.
    /// # let cmb = unsafe { Provider::<Cmb>::new(Bdf::new(0, 3, 0, 0), 2, PhysAddr::new(0x4000_0000), BusAddr::new_unchecked(0), 1 << 20)? };
    /// # let nic = Device::<Nic>::new(Bdf::new(0, 4, 0, 0), u64::MAX)?;
    /// // SAFETY: an AMD Zen host bridge forwards P2P on this machine.
    /// let route = unsafe { Route::assume_via_host_bridge(&cmb, &nic, 6) };
    /// assert_eq!(route.distance(), 6);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub unsafe fn assume_via_host_bridge(
        provider: &Provider<PB>,
        _client: &Device<B>,
        distance: u32,
    ) -> Self {
        Self::new(provider, distance)
    }
}

impl<PB: Brand, B: Brand> Route<'static, PB, B, SameDevice> {
    /// The same-device route, when the provider's BAR belongs to the client
    /// itself; `None` otherwise. Safe: both brands are bound to their
    /// functions, so equal addresses mean the same function.
    ///
    /// ```
    /// # use dmaspace::{device::Device, provider::Provider, route::Route, topology::Bdf, BusAddr, PhysAddr};
    /// dmaspace::brand!(Cmb);
    /// dmaspace::brand!(Nvme);
    /// dmaspace::brand!(Other);
    /// # // SAFETY: example values.
    /// # let cmb = unsafe { Provider::<Cmb>::new(Bdf::new(0, 3, 0, 0), 2, PhysAddr::new(0x4000_0000), BusAddr::new_unchecked(0), 1 << 20)? };
    /// let nvme = Device::<Nvme>::new(Bdf::new(0, 3, 0, 0), u64::MAX)?;
    /// let other = Device::<Other>::new(Bdf::new(0, 4, 0, 0), u64::MAX)?;
    /// let route = Route::same_device(&cmb, &nvme).expect("the CMB is the NVMe's own");
    /// assert!(Route::same_device(&cmb, &other).is_none());
    /// let a = cmb.alloc(4096)?;
    /// assert_eq!(route.bar_offset(&a.seg()).as_u64(), 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn same_device(provider: &Provider<PB>, client: &Device<B>) -> Option<Self> {
        (provider.device() == client.bdf()).then(|| Self::new(provider, 0))
    }
}

impl<PB: Brand, B: Brand> Route<'_, PB, B, ViaSwitch> {
    /// The bus address of P2P memory for this client: `phys + bus_offset`,
    /// wrapping, as `pci_p2pdma_bus_addr_map()`. The only way to turn
    /// provider memory into a [`BusAddr`].
    ///
    /// See [`Route::assume_via_switch`].
    #[must_use]
    #[inline(always)]
    pub fn bus_addr(&self, seg: &P2pSeg<'_, PB>) -> BusAddr {
        self.bus_offset.apply(seg.phys())
    }
}

impl<PB: Brand, B: Brand> Route<'_, PB, B, SameDevice> {
    /// The offset of P2P memory in the client's own BAR. The only way to
    /// turn provider memory into a [`BarOffset`].
    ///
    /// See [`Route::same_device`].
    #[must_use]
    #[inline(always)]
    pub fn bar_offset(&self, seg: &P2pSeg<'_, PB>) -> BarOffset {
        bar_offset(self.bar_cpu_start, seg.phys())
    }

    /// The BAR index.
    ///
    /// See [`Route::same_device`].
    #[must_use]
    pub fn bar(&self) -> u8 {
        self.bar
    }
}

impl<PB: Brand, B: Brand, K: RouteKind> fmt::Debug for Route<'_, PB, B, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Route<{} -> {}, {}>(distance {})",
            PB::NAME,
            B::NAME,
            core::any::type_name::<K>()
                .rsplit("::")
                .next()
                .unwrap_or("?"),
            self.distance
        )
    }
}

/// The classified route of one (provider, client) pair: the typed form of
/// the kernel's map type. `NOT_SUPPORTED` is not a variant: classification
/// returns an error instead.
#[derive(Debug)]
pub enum P2pRoute<'t, PB: Brand, B: Brand> {
    /// `PCI_P2PDMA_MAP_BUS_ADDR` between two devices.
    ViaSwitch(Route<'t, PB, B, ViaSwitch>),
    /// `PCI_P2PDMA_MAP_THRU_HOST_BRIDGE`.
    ViaHostBridge(Route<'t, PB, B, ViaHostBridge>),
    /// Provider and client are one device (the seeds' case (c)).
    SameDevice(Route<'t, PB, B, SameDevice>),
}

/// Why no route exists between a provider and a client.
#[cfg(feature = "alloc")]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteError {
    /// The provider's or the client's function is not in the topology.
    Topology(crate::topology::TopologyError),
    /// The kernel's `PCI_P2PDMA_MAP_NOT_SUPPORTED` (also returned when ACS
    /// could not be read and might have changed the answer).
    NotSupported(crate::topology::Verdict),
}

#[cfg(feature = "alloc")]
impl fmt::Display for RouteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RouteError::Topology(e) => write!(f, "{e}"),
            RouteError::NotSupported(v) => write!(
                f,
                "P2P from {} to {} is not supported (distance -1){}",
                v.provider,
                v.client,
                match v.acs {
                    crate::topology::AcsKnowledge::Unknown => ": ACS could not be read",
                    crate::topology::AcsKnowledge::Known => "",
                }
            ),
        }
    }
}
#[cfg(feature = "alloc")]
impl core::error::Error for RouteError {}

#[cfg(feature = "alloc")]
impl<'t, PB: Brand, B: Brand> P2pRoute<'t, PB, B> {
    /// Classifies the pair exactly as `calc_map_type_and_dist()` does on
    /// `topology` and returns the typed route, tied to that snapshot: the
    /// topology cannot change while the route is alive.
    ///
    /// Provider memory of the client itself gives [`SameDevice`] whatever
    /// the kernel's verdict (the transfer never leaves the device, so ACS
    /// and the host bridge do not matter); the kernel would return
    /// `bus_addr` distance 0, or, with ACS redirect on the device itself,
    /// a host-bridge verdict. [`crate::topology::Topology::verdict`] gives
    /// the kernel's answer unchanged.
    ///
    /// # Errors
    /// [`RouteError::NotSupported`] for the kernel's `NOT_SUPPORTED`
    /// (never a route); [`RouteError::Topology`] if a function is unknown.
    ///
    /// ```
    /// use dmaspace::route::P2pRoute;
    /// use dmaspace::topology::{Bdf, PciFunction, PciePortType, Policy, Topology};
    /// use dmaspace::{device::Device, provider::Provider, BusAddr, PhysAddr};
    /// dmaspace::brand!(Cmb);
    /// dmaspace::brand!(Nic);
    /// let (rp, usp, dsp1, dsp2) = (Bdf::new(0, 0, 2, 0), Bdf::new(0, 1, 0, 0), Bdf::new(0, 2, 0, 0), Bdf::new(0, 2, 1, 0));
    /// let (nvme, nic) = (Bdf::new(0, 3, 0, 0), Bdf::new(0, 4, 0, 0));
    /// let topo = Topology::builder()
    ///     .function(PciFunction::new(Bdf::new(0, 0, 0, 0), 0x8086, 0x29c0))
    ///     .function(PciFunction::new(rp, 0x1b36, 0x000c).with_port(PciePortType::RootPort))
    ///     .function(PciFunction::new(usp, 0x104c, 0x8232).with_port(PciePortType::UpstreamPort).under(rp))
    ///     .function(PciFunction::new(dsp1, 0x104c, 0x8233).with_port(PciePortType::DownstreamPort).under(usp))
    ///     .function(PciFunction::new(dsp2, 0x104c, 0x8233).with_port(PciePortType::DownstreamPort).under(usp))
    ///     .function(PciFunction::new(nvme, 0x1b36, 0x0010).under(dsp1))
    ///     .function(PciFunction::new(nic, 0x8086, 0x10d3).under(dsp2))
    ///     .build()?;
    /// // SAFETY: example values standing for the NVMe's CMB.
    /// let cmb = unsafe { Provider::<Cmb>::new(nvme, 2, PhysAddr::new(0xfe00_0000), BusAddr::new_unchecked(0xfe00_0000), 1 << 20)? };
    /// let client = Device::<Nic>::new(nic, u64::MAX)?;
    /// let route = P2pRoute::classify(&topo, &Policy::default(), &cmb, &client)?;
    /// assert!(matches!(route, P2pRoute::ViaSwitch(_)));
    /// assert_eq!(route.distance(), 4);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn classify(
        topology: &'t crate::topology::Topology,
        policy: &crate::topology::Policy,
        provider: &Provider<PB>,
        client: &Device<B>,
    ) -> Result<Self, RouteError> {
        use crate::topology::MapType;
        let verdict = topology
            .verdict(provider.device(), client.bdf(), policy)
            .map_err(RouteError::Topology)?;
        if provider.device() == client.bdf() {
            return Ok(P2pRoute::SameDevice(Route::new(provider, 0)));
        }
        match verdict.map_type {
            MapType::BusAddr => Ok(P2pRoute::ViaSwitch(Route::new(provider, verdict.distance))),
            MapType::ThruHostBridge => Ok(P2pRoute::ViaHostBridge(Route::new(
                provider,
                verdict.distance,
            ))),
            MapType::NotSupported => Err(RouteError::NotSupported(verdict)),
        }
    }
}

impl<PB: Brand, B: Brand> P2pRoute<'_, PB, B> {
    /// The kernel's distance.
    ///
    /// See the crate-level example.
    #[must_use]
    pub fn distance(&self) -> u32 {
        match self {
            P2pRoute::ViaSwitch(r) => r.distance(),
            P2pRoute::ViaHostBridge(r) => r.distance(),
            P2pRoute::SameDevice(r) => r.distance(),
        }
    }
}

impl<'t, PB: Brand, B: Brand> From<Route<'t, PB, B, ViaSwitch>> for P2pRoute<'t, PB, B> {
    fn from(r: Route<'t, PB, B, ViaSwitch>) -> Self {
        P2pRoute::ViaSwitch(r)
    }
}
impl<'t, PB: Brand, B: Brand> From<Route<'t, PB, B, ViaHostBridge>> for P2pRoute<'t, PB, B> {
    fn from(r: Route<'t, PB, B, ViaHostBridge>) -> Self {
        P2pRoute::ViaHostBridge(r)
    }
}
impl<'t, PB: Brand, B: Brand> From<Route<'t, PB, B, SameDevice>> for P2pRoute<'t, PB, B> {
    fn from(r: Route<'t, PB, B, SameDevice>) -> Self {
        P2pRoute::SameDevice(r)
    }
}
