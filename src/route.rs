//! Route witnesses: proof that provider `PB`'s memory reaches client `K`,
//! and by which path. The mappers require one for every P2P segment.
//!
//! A route is what `calc_map_type_and_dist()` decides, turned into a type:
//! [`ViaBusAddr`] (the kernel's `PCI_P2PDMA_MAP_BUS_ADDR`: a common upstream
//! bridge and no ACS redirect on the way) is the only way to a bus address
//! from P2P memory, [`SameDevice`] the only way to a [`BarOffset`], and
//! [`ViaHostBridge`] (`PCI_P2PDMA_MAP_THRU_HOST_BRIDGE`) maps P2P memory
//! like MMIO through the client's IOMMU.
//!
//! # Invariants
//! A route borrows the provider and the client it was made for, and (when
//! classified) the machine: none of them can be dropped or changed while it
//! lives, and a mapping borrows the route. It records their run-time
//! identities; the mapper refuses it for another client or another
//! provider's memory ([`MapError::RouteMismatch`],
//! [`MapError::ForeignProvider`]).
//!
//! [`BarOffset`]: crate::BarOffset
//! [`MapError::RouteMismatch`]: crate::error::MapError::RouteMismatch
//! [`MapError::ForeignProvider`]: crate::error::MapError::ForeignProvider

use core::fmt;
use core::marker::PhantomData;

use crate::addr::{BusOffset, DmaAddr, PhysAddr};
use crate::brand::{Brand, Invariant};
use crate::device::Device;
use crate::dir::Direction;
use crate::error::MapError;
use crate::id::{DeviceId, ProviderId};
use crate::provider::Provider;
use crate::sealed::Sealed;
use crate::vec::{DeviceVisible, DmaSeg, DmaVec, P2pSeg};

/// The kind of path a [`Route`] takes: [`ViaBusAddr`], [`ViaHostBridge`] or [`SameDevice`].
pub trait RouteKind: Sealed + 'static {
    /// The kernel's name of the map type (`bus_addr`, `thru_host_bridge`).
    const KERNEL_NAME: &'static str;
}

/// Provider and client share an upstream bridge and no ACS redirect lies
/// on the way (the kernel's `BUS_ADDR`): the transaction is routed by bus
/// address below that bridge, the IOMMU is bypassed, nothing to unmap.
#[derive(Debug)]
pub enum ViaBusAddr {}
/// The transaction goes up to the host bridge, which forwards it: mapped
/// like MMIO through the client's IOMMU (never bounced, never cache-synced).
#[derive(Debug)]
pub enum ViaHostBridge {}
/// Provider and client are the same device: the memory is the client's own
/// BAR and is addressed by offset; nothing goes on the wire.
#[derive(Debug)]
pub enum SameDevice {}

impl Sealed for ViaBusAddr {}
impl Sealed for ViaHostBridge {}
impl Sealed for SameDevice {}
impl RouteKind for ViaBusAddr {
    const KERNEL_NAME: &'static str = "bus_addr";
}
impl RouteKind for ViaHostBridge {
    const KERNEL_NAME: &'static str = "thru_host_bridge";
}
impl RouteKind for SameDevice {
    const KERNEL_NAME: &'static str = "bus_addr";
}

/// A route of kind `R` from provider `PB` to client `K`, valid while `'r`
/// (the provider, the client and, when classified, the machine) is borrowed.
pub struct Route<'r, PB: Brand, K: Brand, R: RouteKind> {
    distance: u32,
    bus_offset: BusOffset,
    bar: u8,
    bar_cpu_start: PhysAddr,
    /// Where the process sees the BAR's first byte, if it maps it.
    bar_vaddr: Option<usize>,
    provider: ProviderId,
    client: DeviceId,
    /// The client's DMA mask: the last address it can emit.
    client_mask: u64,
    _witness: Witness<'r, PB, K, R>,
}

/// Borrows what the route witnesses, and names the pair and the kind.
type Witness<'r, PB, K, R> = PhantomData<(&'r (), Invariant<(PB, K, R)>)>;

impl<'r, PB: Brand, K: Brand, R: RouteKind> Route<'r, PB, K, R> {
    fn new(provider: &'r Provider<PB>, client: &'r Device<'_, K>, distance: u32) -> Self {
        // INVARIANT: `'r` borrows `provider` and `client` (and, in `classify`, the machine);
        // their identities and BAR values are copied while borrowed, so they stay true.
        Self {
            distance,
            bus_offset: provider.bus_offset(),
            bar: provider.bar(),
            bar_cpu_start: provider.cpu_start(),
            bar_vaddr: provider.cpu_mapping(),
            provider: provider.id(),
            client: client.id(),
            client_mask: client.limits().dma_mask(),
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

    pub(crate) fn client(&self) -> DeviceId {
        self.client
    }

    pub(crate) fn provider(&self) -> ProviderId {
        self.provider
    }
}

impl<'r, PB: Brand, K: Brand> Route<'r, PB, K, ViaBusAddr> {
    /// A bus-address route the caller vouches for, without a machine
    /// (kernel code that already ran `pci_p2pdma_distance()`, a fixed
    /// embedded board).
    ///
    /// # Safety
    /// Provider and client must share an upstream bridge with no ACS
    /// redirect on the path (the kernel's `PCI_P2PDMA_MAP_BUS_ADDR`), for as
    /// long as the route is used: otherwise the bus addresses this route
    /// mints are routed upstream, where the IOMMU may send them anywhere.
    ///
    /// ```
    /// # use dmaspace::prelude::*;
    /// brand!(Cmb);
    /// brand!(Nic);
    /// // SAFETY: example values standing for a real BAR.
    /// let cmb = unsafe { Provider::<Cmb>::new(Bdf::new(0, 3, 0, 0), 2, PhysAddr::new(0x4000_0000), BusAddr::new_unchecked(0), 1 << 20)? };
    /// // SAFETY: the only driver of this function in the example.
    /// let nic = unsafe { Device::<Nic>::new_unchecked(Bdf::new(0, 4, 0, 0), DmaLimits::BITS_64) };
    /// // SAFETY: both sit below the same switch on this board, ACS off.
    /// let route = unsafe { Route::assume_bus_addr(&cmb, &nic, 4) };
    /// assert_eq!(route.distance(), 4);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub unsafe fn assume_bus_addr(
        provider: &'r Provider<PB>,
        client: &'r Device<'_, K>,
        distance: u32,
    ) -> Self {
        Self::new(provider, client, distance)
    }

    /// The raw bus address of P2P memory for this client: `phys +
    /// bus_offset`, wrapping, as `pci_p2pdma_bus_addr_map()`. Crate-private:
    /// device addresses come out of mappers only.
    #[inline(always)]
    pub(crate) fn bus_addr(&self, seg: &P2pSeg<'_, PB>) -> u64 {
        self.bus_offset.apply(seg.phys())
    }
}

impl<'r, PB: Brand, K: Brand> Route<'r, PB, K, ViaHostBridge> {
    /// A host-bridge route the caller vouches for, without a machine.
    ///
    /// # Safety
    /// The host bridge must forward P2P transactions between the two
    /// devices (AMD Zen, or an allowlisted bridge), for as long as the
    /// route is used; otherwise the transaction is dropped or misrouted.
    ///
    /// ```
    /// # use dmaspace::prelude::*;
    /// # brand!(Cmb);
    /// # brand!(Nic);
    /// # // SAFETY: example values.
    /// # let cmb = unsafe { Provider::<Cmb>::new(Bdf::new(0, 3, 0, 0), 2, PhysAddr::new(0x4000_0000), BusAddr::new_unchecked(0), 1 << 20)? };
    /// # // SAFETY: example device.
    /// # let nic = unsafe { Device::<Nic>::new_unchecked(Bdf::new(0, 4, 0, 0), DmaLimits::BITS_64) };
    /// // SAFETY: an AMD Zen host bridge forwards P2P on this machine.
    /// let route = unsafe { Route::assume_host_bridge(&cmb, &nic, 6) };
    /// assert_eq!(route.distance(), 6);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub unsafe fn assume_host_bridge(
        provider: &'r Provider<PB>,
        client: &'r Device<'_, K>,
        distance: u32,
    ) -> Self {
        Self::new(provider, client, distance)
    }

    /// Where the process sees P2P memory of this route's provider (what a
    /// backend that maps process virtual addresses maps), if the provider's
    /// BAR is mapped into the process.
    #[inline(always)]
    #[expect(
        clippy::cast_possible_truncation,
        reason = "an offset inside a BAR the process maps, below its usize length"
    )]
    pub(crate) fn cpu_vaddr(&self, seg: &P2pSeg<'_, PB>) -> Option<usize> {
        // `seg` lies in this provider's BAR, and the provider checked that
        // its whole mapping fits in the address space.
        let offset = seg
            .phys()
            .as_u64()
            .wrapping_sub(self.bar_cpu_start.as_u64());
        self.bar_vaddr.map(|v| v + offset as usize)
    }
}

impl<'r, PB: Brand, K: Brand> Route<'r, PB, K, SameDevice> {
    /// The same-device route, when the provider's BAR belongs to the client
    /// itself (same function of the same machine); `None` otherwise. Safe:
    /// a device is the only live driver of its function (see
    /// [`Device`]'s invariants), so the provider's function is this device.
    ///
    /// ```
    /// # use dmaspace::prelude::*;
    /// brand!(Cmb);
    /// brand!(Nvme);
    /// brand!(Other);
    /// // SAFETY: example values standing for the NVMe's CMB.
    /// let cmb = unsafe { Provider::<Cmb>::new(Bdf::new(0, 3, 0, 0), 2, PhysAddr::new(0x4000_0000), BusAddr::new_unchecked(0), 1 << 20)? };
    /// // SAFETY: the only drivers of these functions in the example.
    /// let (nvme, other) = unsafe {
    ///     (Device::<Nvme>::new_unchecked(Bdf::new(0, 3, 0, 0), DmaLimits::BITS_64),
    ///      Device::<Other>::new_unchecked(Bdf::new(0, 4, 0, 0), DmaLimits::BITS_64))
    /// };
    /// assert!(Route::same_device(&cmb, &nvme).is_some());
    /// assert!(Route::same_device(&cmb, &other).is_none());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn same_device(provider: &'r Provider<PB>, client: &'r Device<'_, K>) -> Option<Self> {
        (provider.function() == client.function()).then(|| Self::new(provider, client, 0))
    }

    /// The BAR index.
    ///
    /// See [`Route::same_device`].
    #[must_use]
    pub fn bar(&self) -> u8 {
        self.bar
    }

    /// The address device `K` itself uses for an own-BAR segment of
    /// `mapping` (a [`Via::OwnBar`](crate::vec::Via::OwnBar) segment, made
    /// with this route): the BAR's bus start plus the segment's offset. An
    /// NVMe controller puts this, not the offset, into a PRP entry that
    /// points into its own CMB; it recognises its own BAR and the transfer
    /// never leaves the device. The address borrows the segment, so it
    /// cannot outlive the mapping.
    ///
    /// # Errors
    /// [`MapError::RouteMismatch`] if `mapping` is for another device than
    /// this route's client; [`MapError::NotInMapping`] if `seg` is not one
    /// of `mapping`'s segments; [`MapError::NotOwnBar`] if it is not in
    /// this route's BAR (a wire segment, or another BAR of the device);
    /// [`MapError::Overflow`] if the bus range would pass the top of the
    /// address space; [`MapError::BeyondDmaMask`] if its last byte lies
    /// beyond the client's DMA mask (a CMB above 4 GiB, a 32-bit
    /// controller), as for every address a mapper hands out.
    ///
    /// ```
    /// # use dmaspace::prelude::*;
    /// use dmaspace::dir::ToDevice;
    /// use dmaspace::vec::SegOf;
    /// brand!(Cmb);
    /// brand!(Nvme);
    /// // SAFETY: the NVMe's CMB as its BAR register shows it: CPU 0x5000_0000,
    /// // bus 0x1000_0000 (a host bridge that translates).
    /// let cmb = unsafe { Provider::<Cmb>::new(Bdf::new(0, 3, 0, 0), 2, PhysAddr::new(0x5000_0000), BusAddr::new_unchecked(0x1000_0000), 1 << 20)? };
    /// // SAFETY: the only driver of this function in the example.
    /// let nvme = unsafe { Device::<Nvme>::new_unchecked(Bdf::new(0, 3, 0, 0), DmaLimits::BITS_64) };
    /// let route = Route::same_device(&cmb, &nvme).ok_or("not the same device")?;
    /// let sq = cmb.alloc(4096)?;
    /// let p2p: P2pRoute<'_, Cmb, Nvme> = Route::same_device(&cmb, &nvme).ok_or("not the same device")?.into();
    /// // SAFETY: the simulated NVMe reaches simulated memory by address.
    /// let mapper = unsafe { Mapper::direct(&nvme) }?;
    /// let prp = mapper.map_bvec::<ToDevice, _, _>(&mut [sq.seg().into_bvec_seg()], &p2p, SegBuf::with_capacity(1), |v| {
    ///     let v = v.sync();
    ///     let seg = &v.segments(nvme.id())?[0];
    ///     assert_eq!(seg.bar_offset().map(|(bar, off)| (bar, off.as_u64())), Some((2, 0)));
    ///     route.own_bar_bus_addr(&v, seg).map(|a| a.as_u64().to_le_bytes())
    /// })??;
    /// assert_eq!(u64::from_le_bytes(prp), 0x1000_0000);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn own_bar_bus_addr<'s, D: Direction, S: DeviceVisible>(
        &self,
        mapping: &DmaVec<'_, K, D, S>,
        seg: &'s DmaSeg<K, D>,
    ) -> Result<DmaAddr<'s, K, D>, MapError> {
        if mapping.device() != self.client {
            return Err(MapError::RouteMismatch);
        }
        if !mapping.holds(seg) {
            return Err(MapError::NotInMapping);
        }
        let (bar, offset, len) = seg.own_bar_raw().ok_or(MapError::NotOwnBar)?;
        if bar != self.bar {
            return Err(MapError::NotOwnBar);
        }
        let bus_start = self.bus_offset.apply(self.bar_cpu_start);
        let overflow = MapError::Overflow {
            start: bus_start,
            len: offset.saturating_add(len),
        };
        let start = bus_start.checked_add(offset).ok_or(overflow)?;
        let last = start.checked_add(len - 1).ok_or(overflow)?;
        // The device puts this address in a PRP entry like any other: it
        // must be one it can emit, as every address a mapper hands out.
        if last > self.client_mask {
            return Err(MapError::BeyondDmaMask {
                index: mapping.index_of(seg).unwrap_or(0),
                last,
                mask: self.client_mask,
            });
        }
        Ok(DmaAddr::from_raw(start))
    }

    /// The offset of P2P memory in the client's own BAR. Crate-private:
    /// device addresses come out of mappers only.
    #[inline(always)]
    pub(crate) fn bar_offset(&self, seg: &P2pSeg<'_, PB>) -> u64 {
        // `seg` lies in this provider's BAR, so at or above its start.
        seg.phys()
            .as_u64()
            .wrapping_sub(self.bar_cpu_start.as_u64())
    }
}

impl<PB: Brand, K: Brand, R: RouteKind> fmt::Debug for Route<'_, PB, K, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Route<{} -> {}, {}>(distance {})",
            PB::NAME,
            K::NAME,
            core::any::type_name::<R>()
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
pub enum P2pRoute<'r, PB: Brand, K: Brand> {
    /// `PCI_P2PDMA_MAP_BUS_ADDR` between two devices.
    ViaBusAddr(Route<'r, PB, K, ViaBusAddr>),
    /// `PCI_P2PDMA_MAP_THRU_HOST_BRIDGE`.
    ViaHostBridge(Route<'r, PB, K, ViaHostBridge>),
    /// Provider and client are one device (the seeds' case (c)).
    SameDevice(Route<'r, PB, K, SameDevice>),
}

/// Why no route exists between a provider and a client.
#[cfg(feature = "alloc")]
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RouteError {
    /// The provider's or the client's function is not in the topology.
    Topology(dmaspace_pci::TopologyError),
    /// The provider or the client is a function of another machine.
    OtherMachine,
    /// The kernel's `PCI_P2PDMA_MAP_NOT_SUPPORTED` (also returned when ACS
    /// could not be read and might have changed the answer).
    NotSupported(dmaspace_pci::Verdict),
}

#[cfg(feature = "alloc")]
impl fmt::Display for RouteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RouteError::Topology(e) => write!(f, "{e}"),
            RouteError::OtherMachine => write!(
                f,
                "the provider or the client belongs to another machine than the one classifying"
            ),
            RouteError::NotSupported(v) => write!(
                f,
                "P2P from {} to {} is not supported (distance -1){}",
                v.provider,
                v.client,
                match v.acs {
                    dmaspace_pci::PathAcs::Unknown => ": ACS could not be read",
                    dmaspace_pci::PathAcs::Known => "",
                }
            ),
        }
    }
}
#[cfg(feature = "alloc")]
impl core::error::Error for RouteError {}

#[cfg(feature = "alloc")]
impl<'r, PB: Brand, K: Brand> P2pRoute<'r, PB, K> {
    /// Classifies the pair exactly as `calc_map_type_and_dist()` does on
    /// `machine`'s topology (with its policy) and returns the typed route,
    /// which borrows machine, provider and client: none can change or go
    /// away while it lives.
    ///
    /// Provider memory of the client itself gives [`SameDevice`] whatever
    /// the kernel's verdict (the transfer never leaves the device, so ACS
    /// and the host bridge do not matter); the kernel would return
    /// `bus_addr` distance 0, or, with ACS redirect on the device itself,
    /// a host-bridge verdict. [`dmaspace_pci::Topology::verdict`] gives
    /// the kernel's answer unchanged.
    ///
    /// # Errors
    /// [`RouteError::NotSupported`] for the kernel's `NOT_SUPPORTED`
    /// (never a route); [`RouteError::OtherMachine`] if provider or client
    /// is not of this machine; [`RouteError::Topology`] if a function is
    /// unknown.
    ///
    /// ```
    /// # use dmaspace::prelude::*;
    /// use dmaspace::pci::{PciFunction, PciePortType, Topology};
    /// brand!(Cmb);
    /// brand!(Nic);
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
    /// // SAFETY: a simulated machine; nothing reaches hardware.
    /// let machine = unsafe { Machine::assume(topo) };
    /// // SAFETY: example values standing for the NVMe's CMB.
    /// let cmb = unsafe { machine.provider::<Cmb>(nvme, 2, PhysAddr::new(0xfe00_0000), BusAddr::new_unchecked(0xfe00_0000), 1 << 20)? };
    /// let client = machine.device::<Nic>(nic, DmaLimits::BITS_64)?;
    /// let route = P2pRoute::classify(&machine, &cmb, &client)?;
    /// assert!(matches!(route, P2pRoute::ViaBusAddr(_)));
    /// assert_eq!(route.distance(), 4);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn classify(
        machine: &'r crate::machine::Machine,
        provider: &'r Provider<PB>,
        client: &'r Device<'_, K>,
    ) -> Result<Self, RouteError> {
        use dmaspace_pci::MapType;
        let (pf, cf) = (provider.function(), client.function());
        if pf.machine != machine.id() || cf.machine != machine.id() {
            return Err(RouteError::OtherMachine);
        }
        let verdict = machine
            .topology()
            .verdict(pf.bdf, cf.bdf, machine.policy())
            .map_err(RouteError::Topology)?;
        if pf == cf {
            return Ok(P2pRoute::SameDevice(Route::new(provider, client, 0)));
        }
        match verdict.map_type {
            MapType::BusAddr => Ok(P2pRoute::ViaBusAddr(Route::new(
                provider,
                client,
                verdict.distance,
            ))),
            MapType::ThruHostBridge => Ok(P2pRoute::ViaHostBridge(Route::new(
                provider,
                client,
                verdict.distance,
            ))),
            MapType::NotSupported => Err(RouteError::NotSupported(verdict)),
        }
    }
}

impl<PB: Brand, K: Brand> P2pRoute<'_, PB, K> {
    /// The kernel's distance.
    ///
    /// See the crate-level example.
    #[must_use]
    pub fn distance(&self) -> u32 {
        match self {
            P2pRoute::ViaBusAddr(r) => r.distance(),
            P2pRoute::ViaHostBridge(r) => r.distance(),
            P2pRoute::SameDevice(r) => r.distance(),
        }
    }

    /// The kernel's name of the map type.
    ///
    /// See [`RouteKind::KERNEL_NAME`].
    #[must_use]
    pub fn kernel_name(&self) -> &'static str {
        match self {
            P2pRoute::ViaBusAddr(_) => ViaBusAddr::KERNEL_NAME,
            P2pRoute::ViaHostBridge(_) => ViaHostBridge::KERNEL_NAME,
            P2pRoute::SameDevice(_) => SameDevice::KERNEL_NAME,
        }
    }

    /// For the [`SameDevice`] route,
    /// [`Route::own_bar_bus_addr`]: the address the device itself uses
    /// for an own-BAR segment of `mapping`.
    ///
    /// # Errors
    /// [`MapError::NotOwnBar`] for the other routes (their segments carry
    /// their wire address: [`DmaSeg::addr`]); otherwise as
    /// [`Route::own_bar_bus_addr`].
    ///
    /// See `tests/route.rs`.
    pub fn own_bar_bus_addr<'s, D: Direction, S: DeviceVisible>(
        &self,
        mapping: &DmaVec<'_, K, D, S>,
        seg: &'s DmaSeg<K, D>,
    ) -> Result<DmaAddr<'s, K, D>, MapError> {
        match self {
            P2pRoute::SameDevice(r) => r.own_bar_bus_addr(mapping, seg),
            P2pRoute::ViaBusAddr(_) | P2pRoute::ViaHostBridge(_) => Err(MapError::NotOwnBar),
        }
    }

    pub(crate) fn ids(&self) -> (ProviderId, DeviceId) {
        match self {
            P2pRoute::ViaBusAddr(r) => (r.provider(), r.client()),
            P2pRoute::ViaHostBridge(r) => (r.provider(), r.client()),
            P2pRoute::SameDevice(r) => (r.provider(), r.client()),
        }
    }
}

impl<'r, PB: Brand, K: Brand> From<Route<'r, PB, K, ViaBusAddr>> for P2pRoute<'r, PB, K> {
    fn from(r: Route<'r, PB, K, ViaBusAddr>) -> Self {
        P2pRoute::ViaBusAddr(r)
    }
}
impl<'r, PB: Brand, K: Brand> From<Route<'r, PB, K, ViaHostBridge>> for P2pRoute<'r, PB, K> {
    fn from(r: Route<'r, PB, K, ViaHostBridge>) -> Self {
        P2pRoute::ViaHostBridge(r)
    }
}
impl<'r, PB: Brand, K: Brand> From<Route<'r, PB, K, SameDevice>> for P2pRoute<'r, PB, K> {
    fn from(r: Route<'r, PB, K, SameDevice>) -> Self {
        P2pRoute::SameDevice(r)
    }
}
