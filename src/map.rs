//! Mappers: the only way from host or P2P memory to addresses a device can
//! use.
//!
//! A [`Mapper`] attaches one client device `K` either directly (no IOMMU,
//! dma-direct) or to a software [`IommuDomain`]. One call maps a whole
//! request: the route of its P2P segments is chosen once, IOMMU-bound
//! segments are linked into one contiguous IOVA range, and bus-address
//! segments stay out of it.
//!
//! | segment | route | no IOMMU | IOMMU |
//! |---|---|---|---|
//! | host | — | `Via::Direct` (phys) | `Via::Iommu` (IOVA run) |
//! | P2P | [`ViaBusAddr`] | `Via::BusAddr` | `Via::BusAddr` (bypass) |
//! | P2P | [`ViaHostBridge`] | `Via::Direct` (phys) | `Via::Iommu`, MMIO |
//! | P2P | [`SameDevice`] | `Via::OwnBar` | `Via::OwnBar` |
//!
//! # Scoped mappings
//! A mapping lives for one call: `map_*` maps, hands the closure a
//! [`DmaVec`] (`for<'s>`: it cannot leave the closure), and unmaps when the
//! closure returns or unwinds. `mem::forget` cannot skip the unmap, because
//! the closure never owns the mapping; it only holds a view of it. This is
//! `std::thread::scope`'s answer to the same problem; mappings that must
//! outlive a call own their buffer instead.
//!
//! Each call runs two passes over the request, each readable on its own
//! (`map/plan.rs`, `map/emit.rs`): the plan checks every segment and sizes
//! the IOVA run, then emit links and writes the segments. Nothing is
//! reserved until the plan succeeded, so an error leaves nothing mapped.
//!
//! [`ViaBusAddr`]: crate::route::ViaBusAddr
//! [`ViaHostBridge`]: crate::route::ViaHostBridge
//! [`SameDevice`]: crate::route::SameDevice

mod coherent;
mod emit;
mod owned;
mod plan;
#[cfg(feature = "alloc")]
mod pool;
mod split;
mod translation;

use core::fmt;

use crate::brand::Brand;
use crate::device::Device;
use crate::dir::Direction;
use crate::error::{ClaimError, MapError};
use crate::host::{CacheCoherent, CacheMaintenance};
use crate::iommu::Lease;
use crate::route::P2pRoute;
use crate::vec::{BvecSeg, DmaVec, HostSeg, SegBuf, Unsynced};

pub use coherent::Coherent;
pub use owned::{CpuOwned, DeviceOwned, MappedBuf, Owner};
use plan::{Src, Step};
#[cfg(feature = "alloc")]
pub use pool::{PoolSlot, RegisteredPool};
pub use translation::Direct;
#[cfg(feature = "alloc")]
pub use translation::Iommu;
pub use translation::Translation;
#[cfg(feature = "alloc")]
use {
    crate::backend::{AttachedByConstruction, IommuBackend},
    crate::iommu::IommuDomain,
};

/// The attachment of a device to its mapper; dropping it detaches.
struct Attachment<'d, K: Brand> {
    device: &'d Device<'d, K>,
}

impl<K: Brand> Drop for Attachment<'_, K> {
    fn drop(&mut self) {
        self.device.detach();
    }
}

/// Maps memory for device `K`, directly or through one IOMMU domain.
///
/// # Invariants
/// The device is attached to this mapper and no other (checked at
/// construction, released on drop); a mapper that is leaked keeps its
/// device attached forever.
///
/// `T` is how the device reaches memory ([`Direct`], or
/// [`Iommu`] through a domain's backend); `C` is the
/// platform's cache maintenance, called for host segments only.
///
/// `Sync` when its parts are: all queues of a device map through one
/// `&Mapper` at once.
pub struct Mapper<'d, K: Brand, T: Translation = Direct, C: CacheMaintenance = CacheCoherent> {
    attachment: Attachment<'d, K>,
    translation: T,
    cache: C,
}

impl<'d, K: Brand> Mapper<'d, K, Direct> {
    /// A mapper for a device without an IOMMU (dma-direct): host memory is
    /// used at its physical address.
    ///
    /// # Safety
    /// The device must reach host memory by physical address: no IOMMU
    /// translates its transactions (or one maps it one to one). Behind an
    /// IOMMU, a physical address is an IOVA that may map someone else's
    /// buffer. Software models and emulators, whose "device" is the mapper's
    /// output, satisfy this.
    ///
    /// # Errors
    /// [`ClaimError::AlreadyAttached`] if the device has a live mapper.
    ///
    /// See `tests/map.rs`.
    pub unsafe fn direct(device: &'d Device<'_, K>) -> Result<Self, ClaimError> {
        attach(device, Direct)
    }
}

#[cfg(feature = "alloc")]
impl<'d, K: Brand, B: IommuBackend> Mapper<'d, K, Iommu<'d, B>> {
    /// A mapper for a device attached to IOMMU domain `Dm`, whose backend
    /// `B` programs the translations. Safe only over a backend that every
    /// device reaches by construction ([`AttachedByConstruction`]: the
    /// software IOMMU); over VFIO, the constructors of `dmaspace-vfio` check
    /// the attachment (compile time: the bound; run time: their checks).
    ///
    /// # Errors
    /// [`ClaimError::AlreadyAttached`] if the device has a live mapper.
    ///
    /// See the crate-level example.
    pub fn iommu<Dm: Brand>(
        device: &'d Device<'_, K>,
        domain: &'d IommuDomain<Dm, B>,
    ) -> Result<Self, ClaimError>
    where
        B: AttachedByConstruction,
    {
        attach(device, Iommu::of(domain))
    }

    /// [`Mapper::iommu`] over any backend, the attachment unchecked (what
    /// the VFIO constructors call after checking it).
    ///
    /// # Safety
    /// `device`'s DMA must be translated by `domain`'s backend (the
    /// function attached to its VFIO container or iommufd IOAS, or the
    /// hardware context the backend programs), and stay so for as long as
    /// the mapper lives: an IOVA of this domain means nothing, or another
    /// buffer, in any other context.
    ///
    /// # Errors
    /// [`ClaimError::AlreadyAttached`] if the device has a live mapper.
    ///
    /// ```
    /// # use dmaspace::prelude::*;
    /// brand!(Nvme);
    /// brand!(Dom);
    /// // SAFETY: a simulated device, the only driver of its function here.
    /// let nvme = unsafe { Device::<Nvme>::new_unchecked(Bdf::new(0, 3, 0, 0), DmaLimits::BITS_64) };
    /// let domain = IommuDomain::<Dom>::software(0, 1 << 20)?;
    /// // SAFETY: the software IOMMU translates every simulated device.
    /// let mapper = unsafe { Mapper::iommu_unchecked(&nvme, &domain) }?;
    /// assert_eq!(mapper.device().bdf(), nvme.bdf());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub unsafe fn iommu_unchecked<Dm: Brand>(
        device: &'d Device<'_, K>,
        domain: &'d IommuDomain<Dm, B>,
    ) -> Result<Self, ClaimError> {
        attach(device, Iommu::of(domain))
    }
}

/// Attaches `device` to a new mapper that reaches memory by `translation`.
fn attach<'d, K: Brand, T: Translation>(
    device: &'d Device<'_, K>,
    translation: T,
) -> Result<Mapper<'d, K, T>, ClaimError> {
    device.attach()?;
    // INVARIANT: `device.attach()` above succeeded, so no other mapper is attached;
    // the `Attachment` detaches when this mapper drops.
    Ok(Mapper {
        attachment: Attachment { device },
        translation,
        cache: CacheCoherent,
    })
}

impl<'d, K: Brand, T: Translation, C: CacheMaintenance> Mapper<'d, K, T, C> {
    /// The same mapper with the platform's cache maintenance (non-coherent DMA).
    ///
    /// See `tests/map.rs` for a recording implementation.
    pub fn with_cache<C2: CacheMaintenance>(self, cache: C2) -> Mapper<'d, K, T, C2> {
        // INVARIANT: the attachment moves out of `self`, which is consumed: still one
        // mapper, still attached.
        Mapper {
            attachment: self.attachment,
            translation: self.translation,
            cache,
        }
    }

    /// The device this mapper serves.
    ///
    /// See the crate-level example.
    #[must_use]
    pub fn device(&self) -> &Device<'d, K> {
        self.attachment.device
    }

    /// Maps host pages for the device in direction `D` and runs `use_it`
    /// with the mapping; unmaps when it returns.
    ///
    /// # Errors
    /// As [`Mapper::map_bvec`]; `use_it` does not run.
    ///
    /// See `tests/map.rs`.
    pub fn map_host<D: Direction, R>(
        &self,
        pages: &mut [HostSeg<'_>],
        out: SegBuf<'_>,
        use_it: impl for<'s> FnOnce(DmaVec<'s, K, D, Unsynced>) -> R,
    ) -> Result<R, MapError> {
        self.map_host_in(None, pages, out, use_it)
    }

    /// [`map_host`](Self::map_host) with IOVA space from `cache`, if any.
    fn map_host_in<'q, D: Direction, R>(
        &'q self,
        cache: Option<&T::Cache<'q>>,
        pages: &mut [HostSeg<'_>],
        out: SegBuf<'_>,
        use_it: impl for<'s> FnOnce(DmaVec<'s, K, D, Unsynced>) -> R,
    ) -> Result<R, MapError> {
        let steps = pages.iter().map(|s| (plan::host_step::<T>(s), Some(s)));
        self.run(cache, steps, out, use_it)
    }

    /// A queue of this mapper: the same mappings, with IOVA space from a
    /// cache of its own in front of the domain's allocator (Linux's
    /// per-CPU rcache), so that the queues of one device do not meet on
    /// the shared allocator. One per queue (or thread); `Send`, not `Sync`.
    ///
    /// See `tests/threads.rs`.
    pub fn queue(&self) -> MapQueue<'_, 'd, K, T, C> {
        MapQueue {
            mapper: self,
            cache: self.translation.cache(),
        }
    }

    /// Maps one request of host and P2P segments for the device in
    /// direction `D`, runs `use_it` with the mapping, and unmaps when it
    /// returns. `route` says how the provider reaches this device; it is
    /// consulted once for the whole request.
    ///
    /// IOMMU-bound segments (host memory, and host-bridge P2P when the
    /// device has an IOMMU) are linked into one contiguous IOVA range:
    /// consecutive ones come out merged into one segment; a bus-address or
    /// own-BAR segment ends the run. Order is kept.
    ///
    /// # Errors
    /// - [`MapError::RouteMismatch`]: the route is for another device;
    ///   [`MapError::ForeignProvider`]: a P2P segment is not the route's
    ///   provider's memory.
    /// - [`MapError::Unaligned`]: an IOMMU-bound segment other than the
    ///   first starts inside a granule, or one other than the last ends
    ///   inside one (the `dma_iova_link` rule; no silent fallback).
    /// - [`MapError::PartialGranule`]: through the IOMMU, a host segment
    ///   whose granules hold memory outside its buffer.
    /// - [`MapError::EmptySegment`], [`MapError::Overflow`].
    /// - [`MapError::IovaExhausted`]: no room in the domain below the
    ///   device's DMA mask.
    /// - [`MapError::BeyondDmaMask`]: an address the device cannot emit.
    /// - [`MapError::OutOfCapacity`]: `out` is too small.
    ///
    /// On error nothing is mapped and `use_it` does not run.
    ///
    /// See the crate-level example.
    pub fn map_bvec<D: Direction, PB: Brand, R>(
        &self,
        bvec: &mut [BvecSeg<'_, PB>],
        route: &P2pRoute<'_, PB, K>,
        out: SegBuf<'_>,
        use_it: impl for<'s> FnOnce(DmaVec<'s, K, D, Unsynced>) -> R,
    ) -> Result<R, MapError> {
        self.map_bvec_in(None, bvec, route, out, use_it)
    }

    /// [`map_bvec`](Self::map_bvec) with IOVA space from `cache`, if any.
    fn map_bvec_in<'q, D: Direction, PB: Brand, R>(
        &'q self,
        cache: Option<&T::Cache<'q>>,
        bvec: &mut [BvecSeg<'_, PB>],
        route: &P2pRoute<'_, PB, K>,
        out: SegBuf<'_>,
        use_it: impl for<'s> FnOnce(DmaVec<'s, K, D, Unsynced>) -> R,
    ) -> Result<R, MapError> {
        let (provider, client) = route.ids();
        if client != self.device().id() {
            return Err(MapError::RouteMismatch);
        }
        // The route is matched once; each arm runs the same passes with the
        // P2P rule fixed.
        macro_rules! with_p2p_rule {
            ($p2p:expr) => {{
                let p2p = $p2p;
                let steps = bvec.iter().map(|seg| match seg {
                    BvecSeg::Host(s) => (plan::host_step::<T>(s), Some(s)),
                    // Only the route's own provider: another's memory is refused.
                    BvecSeg::P2p(s) if s.provider() == provider => (p2p(s), None),
                    BvecSeg::P2p(_) => (Step::Foreign, None),
                });
                self.run(cache, steps, out, use_it)
            }};
        }
        match route {
            P2pRoute::ViaBusAddr(r) => with_p2p_rule!(|s| plan::bus_step(r, s)),
            P2pRoute::ViaHostBridge(r) => {
                with_p2p_rule!(|s| plan::host_bridge_step::<T, _, _>(r, s))
            }
            P2pRoute::SameDevice(r) => with_p2p_rule!(|s| plan::own_bar_step(r, s)),
        }
    }

    /// The scope of one mapping: map, hand the view to `use_it`, give the
    /// host pages back to the CPU, unmap (the lease drops here, whatever
    /// `use_it` did).
    #[inline(always)]
    fn run<'q, 'a, D: Direction, R>(
        &'q self,
        cache: Option<&T::Cache<'q>>,
        steps: impl Iterator<Item = (Step, Src<'a>)> + Clone,
        mut out: SegBuf<'_>,
        use_it: impl for<'s> FnOnce(DmaVec<'s, K, D, Unsynced>) -> R,
    ) -> Result<R, MapError> {
        let lease = self.map_into::<D>(cache, steps.clone(), &mut out, true)?;
        // Dropped after `use_it` (even on unwind), before the lease: the
        // CPU's caches are made to see what the device wrote.
        let _for_cpu = ForCpu::<D, _, _> {
            steps,
            cache: &self.cache,
            _dir: core::marker::PhantomData,
        };
        // INVARIANT: `use_it` is `for<'s>`, so the view cannot leave it; `lease` drops
        // when `run` returns (or unwinds), unlinking the mapping whatever `use_it` did.
        let view = DmaVec::new(
            out.as_raw(),
            lease.as_ref().map(|l| l as &dyn Lease),
            self.device().id(),
        );
        Ok(use_it(view))
    }

    /// Maps `steps` into `out`: plan, reserve, emit, and, for a request
    /// (`cut`), cut to the device's segment limits. Returns the IOVA run,
    /// if any; dropping it unmaps.
    #[inline(always)]
    fn map_into<'q, 'c, 'a, D: Direction>(
        &'q self,
        cache: Option<&'c T::Cache<'q>>,
        steps: impl Iterator<Item = (Step, Src<'a>)> + Clone,
        out: &mut SegBuf<'_>,
        cut: bool,
    ) -> Result<Option<T::Lease<'c>>, MapError>
    where
        'q: 'c,
    {
        let limits = self.device().limits();
        let mask = limits.dma_mask();
        let plan = plan::plan(steps.clone(), mask)?;
        let limit = out.limit();
        // Emit writes at most one segment per request segment; count the
        // merged ones exactly only when that bound does not fit.
        let merged = if plan.segments <= limit {
            plan.segments
        } else {
            plan::outputs(steps.clone())
        };
        if merged > limit {
            return Err(MapError::OutOfCapacity { capacity: limit });
        }
        let slots = out.prepare(merged)?;
        let lease = match (T::IOMMU, plan.run.bytes()) {
            (true, 1..) => Some(
                self.translation
                    .reserve(cache, plan.run.bytes(), mask)
                    .ok_or(MapError::IovaExhausted {
                        len: plan.run.bytes(),
                    })?,
            ),
            _ => None,
        };
        // On error the lease drops here: nothing stays mapped.
        let written = emit::emit::<D, _, _, _>(steps, slots, lease.as_ref(), &self.cache)?;
        out.set_len(written);
        if cut && limits.cuts_segments() {
            // On error the lease drops here: nothing stays mapped.
            let total = split::cut(out, written, &limits)?;
            out.set_len(total);
        }
        Ok(lease)
    }

    /// The platform's cache maintenance.
    fn cache(&self) -> &C {
        &self.cache
    }
}

/// Calls `sync_for_cpu` on the host segments of a request when dropped.
struct ForCpu<
    'c,
    'a,
    D: Direction,
    C: CacheMaintenance,
    I: Iterator<Item = (Step, Src<'a>)> + Clone,
> {
    steps: I,
    cache: &'c C,
    _dir: core::marker::PhantomData<fn() -> D>,
}

impl<'a, D: Direction, C: CacheMaintenance, I: Iterator<Item = (Step, Src<'a>)> + Clone> Drop
    for ForCpu<'_, 'a, D, C, I>
{
    #[inline(always)]
    fn drop(&mut self) {
        if C::NOTHING_TO_DO {
            return;
        }
        for (_, src) in self.steps.clone() {
            if let Some(seg) = src {
                self.cache.sync_for_cpu::<D>(seg);
            }
        }
    }
}

/// One queue of a [`Mapper`]: the same mappings, with IOVA space from a
/// cache of its own; see [`Mapper::queue`].
pub struct MapQueue<'m, 'd, K: Brand, T: Translation, C: CacheMaintenance> {
    mapper: &'m Mapper<'d, K, T, C>,
    cache: T::Cache<'m>,
}

impl<'m, K: Brand, T: Translation, C: CacheMaintenance> MapQueue<'m, '_, K, T, C> {
    /// [`Mapper::map_host`] through this queue's cache.
    ///
    /// # Errors
    /// As [`Mapper::map_host`].
    ///
    /// See `tests/threads.rs`.
    pub fn map_host<D: Direction, R>(
        &self,
        pages: &mut [HostSeg<'_>],
        out: SegBuf<'_>,
        use_it: impl for<'s> FnOnce(DmaVec<'s, K, D, Unsynced>) -> R,
    ) -> Result<R, MapError> {
        self.mapper
            .map_host_in(Some(&self.cache), pages, out, use_it)
    }

    /// [`Mapper::map_bvec`] through this queue's cache.
    ///
    /// # Errors
    /// As [`Mapper::map_bvec`].
    ///
    /// See `tests/threads.rs`.
    pub fn map_bvec<D: Direction, PB: Brand, R>(
        &self,
        bvec: &mut [BvecSeg<'_, PB>],
        route: &P2pRoute<'_, PB, K>,
        out: SegBuf<'_>,
        use_it: impl for<'s> FnOnce(DmaVec<'s, K, D, Unsynced>) -> R,
    ) -> Result<R, MapError> {
        self.mapper
            .map_bvec_in(Some(&self.cache), bvec, route, out, use_it)
    }

    /// The mapper this queue belongs to.
    ///
    /// See [`Mapper::queue`].
    #[must_use]
    pub fn mapper(&self) -> &'m Mapper<'_, K, T, C> {
        self.mapper
    }
}

impl<K: Brand, T: Translation, C: CacheMaintenance> fmt::Debug for MapQueue<'_, '_, K, T, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MapQueue")
            .field("mapper", self.mapper)
            .finish()
    }
}

impl<K: Brand, T: Translation, C: CacheMaintenance> fmt::Debug for Mapper<'_, K, T, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mapper")
            .field("device", self.device())
            .field("iommu", &T::IOMMU)
            .finish()
    }
}

#[cfg(all(test, feature = "alloc"))]
mod tests {
    // Unit tests so that Miri (which runs the library's tests) checks the
    // unsafe slice casts of the output path (`SegSlot`, `DmaSeg`).
    use super::*;
    use crate::addr::{BusAddr, PhysAddr};
    use crate::dir::ToDevice;
    use crate::host::SimulatedRam;
    use crate::limits::DmaLimits;
    use crate::provider::Provider;
    use crate::route::Route;
    use crate::vec::{SegOf, SegSlot, Via};
    use dmaspace_pci::Bdf;

    crate::brand!(Cmb);
    crate::brand!(Nic);
    crate::brand!(Dom);

    #[test]
    fn mixed_request_into_caller_slots() {
        // SAFETY: simulated addresses, never given to hardware.
        let mut ram = unsafe { SimulatedRam::new(PhysAddr::new(0x10_0000), 3) };
        let mut pages: std::vec::Vec<_> = ram.pages().collect();
        // SAFETY: a simulated BAR.
        let p = unsafe {
            Provider::<Cmb>::new(
                Bdf::new(0, 3, 0, 0),
                0,
                PhysAddr::new(0x4000_0000),
                BusAddr::new_unchecked(0),
                1 << 16,
            )
        }
        .unwrap();
        let a = p.alloc(0x1000).unwrap();
        // SAFETY: a simulated device.
        let nic = unsafe { Device::<Nic>::new_unchecked(Bdf::new(0, 4, 0, 0), DmaLimits::BITS_64) };
        let dom = IommuDomain::<Dom>::software(0x8000, 3 * 4096).unwrap();
        // SAFETY: a simulated switch.
        let route: P2pRoute<'_, Cmb, Nic> = unsafe { Route::assume_bus_addr(&p, &nic, 4) }.into();
        let m = Mapper::iommu(&nic, &dom).unwrap();
        let [x, y, z] = &mut pages[..] else {
            unreachable!()
        };
        let mut bv: [BvecSeg<'_, Cmb>; 4] = [
            x.dma().into_bvec_seg(),
            y.dma().into_bvec_seg(),
            a.seg().into_bvec_seg(),
            z.dma().into_bvec_seg(),
        ];
        let mut slots = [SegSlot::EMPTY; 3];
        let got = m
            .map_bvec::<ToDevice, _, _>(&mut bv, &route, SegBuf::from_slots(&mut slots), |v| {
                let v = v.sync();
                v.segments(nic.id())
                    .unwrap()
                    .iter()
                    .map(|s| (s.addr().map(crate::DmaAddr::as_u64), s.len(), s.via()))
                    .collect::<std::vec::Vec<_>>()
            })
            .unwrap();
        assert_eq!(
            got,
            [
                (Some(0x8000), 0x2000, Via::Iommu),
                (Some(0), 0x1000, Via::BusAddr),
                (Some(0xa000), 0x1000, Via::Iommu),
            ]
        );
        assert_eq!(dom.reserved_granules(), 0);
        // One slot too few: an error, and nothing stays reserved.
        let mut slots = [SegSlot::EMPTY; 2];
        let err = m
            .map_bvec::<ToDevice, _, _>(&mut bv, &route, SegBuf::from_slots(&mut slots), |_| ())
            .unwrap_err();
        assert_eq!(err, MapError::OutOfCapacity { capacity: 2 });
        assert_eq!(dom.reserved_granules(), 0);
    }
}
