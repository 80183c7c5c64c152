//! Mappers: the only way from host or P2P memory to addresses a device can
//! use.
//!
//! A [`Mapper`] serves one client device `B`, either directly (no IOMMU,
//! `dma-direct`) or through a software [`IommuDomain`]. One call,
//! [`Mapper::map_bvec`], maps a whole request: the route of its P2P
//! segments is chosen once, IOMMU-bound segments are linked into one
//! contiguous IOVA range, and bus-address segments stay out of it.
//!
//! | segment | route | no IOMMU | IOMMU |
//! |---|---|---|---|
//! | host | — | `Via::Direct` (phys) | `Via::Iommu` (IOVA run) |
//! | P2P | [`ViaSwitch`] | `Via::BusAddr` | `Via::BusAddr` (bypass) |
//! | P2P | [`ViaHostBridge`] | `Via::Direct` (phys) | `Via::Iommu`, MMIO |
//! | P2P | [`SameDevice`] | `DmaSeg::Local` | `DmaSeg::Local` |

use core::cell::Cell;
use core::fmt;
use core::mem::MaybeUninit;

use crate::addr::{DmaAddr, PhysAddr};
use crate::brand::Brand;
use crate::device::Device;
use crate::dir::Direction;
use crate::error::MapError;
use crate::host::{CacheMaintenance, Coherent};
use crate::iommu::{DomainCore, GRANULE, IommuDomain, IovaLease, Pte, perm_bits};
use crate::route::{P2pRoute, Route, SameDevice, ViaHostBridge, ViaSwitch};
use crate::vec::{BvecSeg, DmaSeg, DmaVec, HostSeg, P2pSeg, SegBuf, Unsynced, Via};

#[cfg(doc)]
use crate::route::P2pRoute as _;

/// Maps memory for device `B`. Holds the device mutably: one mapper (one
/// domain) per device at a time.
///
/// `C` is the platform's cache maintenance, called for host segments only.
pub struct Mapper<'d, B: Brand, C: CacheMaintenance = Coherent> {
    device: &'d mut Device<B>,
    iommu: Option<&'d DomainCore<'d>>,
    cache: C,
}

/// What one segment of a request becomes; decided per request by the
/// route, so the loop below does no classification.
#[derive(Clone, Copy)]
enum Step {
    /// Link into the IOVA run (`mmio`: P2P through the host bridge).
    Link {
        phys: PhysAddr,
        len: u64,
        mmio: bool,
    },
    /// Physical address as is (dma-direct).
    Direct { phys: PhysAddr, len: u64 },
    /// Bus address, IOMMU bypassed.
    Bus { raw: u64, len: u64 },
    /// Offset in the client's own BAR.
    Local { bar: u8, offset: u64, len: u64 },
}

impl<'d, B: Brand> Mapper<'d, B, Coherent> {
    /// A mapper for a device without an IOMMU (dma-direct): host memory is
    /// used at its physical address.
    ///
    /// See the crate-level example.
    pub fn direct(device: &'d mut Device<B>) -> Self {
        Self {
            device,
            iommu: None,
            cache: Coherent,
        }
    }

    /// A mapper for a device attached to IOMMU domain `Dm`.
    ///
    /// See the crate-level example.
    pub fn iommu<Dm: Brand>(device: &'d mut Device<B>, domain: &'d IommuDomain<'_, Dm>) -> Self {
        Self {
            device,
            iommu: Some(domain.core()),
            cache: Coherent,
        }
    }
}

impl<'d, B: Brand, C: CacheMaintenance> Mapper<'d, B, C> {
    /// The same mapper with the platform's cache maintenance (non-coherent DMA).
    ///
    /// See `tests/map.rs` for a recording implementation.
    pub fn with_cache<C2: CacheMaintenance>(self, cache: C2) -> Mapper<'d, B, C2> {
        Mapper {
            device: self.device,
            iommu: self.iommu,
            cache,
        }
    }

    /// The device this mapper serves.
    ///
    /// See the crate-level example.
    #[must_use]
    pub fn device(&self) -> &Device<B> {
        self.device
    }

    /// Maps host pages for the device in direction `D`.
    ///
    /// # Errors
    /// As [`Mapper::map_bvec`].
    ///
    /// See the crate-level example.
    pub fn map_pages<'a, D: Direction>(
        &'a self,
        pages: &[HostSeg<'a>],
        out: SegBuf<'a, DmaSeg<B>>,
    ) -> Result<DmaVec<'a, B, D, Unsynced>, MapError> {
        let host = self.host_step();
        self.map_steps::<D>(pages.iter().map(|s| (host(s), Some(s))), out)
    }

    /// Maps one request of host and P2P segments for the device in
    /// direction `D`. `route` says how provider `PB` reaches this device;
    /// it is consulted once for the whole request.
    ///
    /// IOMMU-bound segments (host memory, and host-bridge P2P when the
    /// device has an IOMMU) are linked into one contiguous IOVA range:
    /// consecutive ones come out merged into one segment; a bus-address or
    /// device-local segment ends the run. Order is kept.
    ///
    /// # Errors
    /// - [`MapError::Unaligned`]: an IOMMU-bound segment other than the
    ///   first starts inside a granule, or one other than the last ends
    ///   inside one (the `dma_iova_link` rule; no silent fallback).
    /// - [`MapError::EmptySegment`], [`MapError::Overflow`].
    /// - [`MapError::IovaExhausted`]: the domain has no room.
    /// - [`MapError::BeyondDmaMask`]: without an IOMMU, memory the device
    ///   cannot address.
    /// - [`MapError::OutOfCapacity`]: `out` is full.
    ///
    /// On error nothing stays mapped.
    ///
    /// See the crate-level example.
    pub fn map_bvec<'a, D: Direction, PB: Brand>(
        &'a self,
        bvec: &[BvecSeg<'a, PB>],
        route: &P2pRoute<'_, PB, B>,
        out: SegBuf<'a, DmaSeg<B>>,
    ) -> Result<DmaVec<'a, B, D, Unsynced>, MapError> {
        let host = self.host_step();
        // The route is matched once; each arm runs the same loop with the
        // P2P rule fixed.
        match route {
            P2pRoute::ViaSwitch(r) => {
                self.map_mixed::<D, PB>(bvec, out, &host, |s| switch_step(r, s))
            }
            P2pRoute::ViaHostBridge(r) => {
                let step = self.host_bridge_step(r);
                self.map_mixed::<D, PB>(bvec, out, &host, step)
            }
            P2pRoute::SameDevice(r) => {
                self.map_mixed::<D, PB>(bvec, out, &host, |s| local_step(r, s))
            }
        }
    }

    /// Memory reached by its physical address: linked into the IOVA run
    /// when the device has an IOMMU (`mmio` for host-bridge P2P), used as
    /// is otherwise.
    #[inline(always)]
    fn phys_step(iommu: bool, phys: PhysAddr, len: u64, mmio: bool) -> Step {
        if iommu {
            Step::Link { phys, len, mmio }
        } else {
            Step::Direct { phys, len }
        }
    }

    fn host_step(&self) -> impl Fn(&HostSeg<'_>) -> Step + use<'_, 'd, B, C> {
        let iommu = self.iommu.is_some();
        move |s| Self::phys_step(iommu, s.phys(), s.len(), false)
    }

    fn host_bridge_step<PB: Brand>(
        &self,
        _route: &Route<'_, PB, B, ViaHostBridge>,
    ) -> impl Fn(&P2pSeg<'_, PB>) -> Step + use<'_, 'd, B, C, PB> {
        let iommu = self.iommu.is_some();
        move |s| Self::phys_step(iommu, s.phys(), s.len(), true)
    }

    #[inline(always)]
    fn map_mixed<'a, D: Direction, PB: Brand>(
        &'a self,
        bvec: &[BvecSeg<'a, PB>],
        out: SegBuf<'a, DmaSeg<B>>,
        host: &impl Fn(&HostSeg<'_>) -> Step,
        p2p: impl Fn(&P2pSeg<'_, PB>) -> Step,
    ) -> Result<DmaVec<'a, B, D, Unsynced>, MapError> {
        let steps = bvec.iter().map(|seg| match seg {
            BvecSeg::Host(s) => (host(s), Some(s)),
            BvecSeg::P2p(s) => (p2p(s), None),
        });
        self.map_steps::<D>(steps, out)
    }

    /// The one mapping loop: validate and size the IOVA run, reserve it,
    /// then link and emit. `host` is `Some` for host segments (cache sync).
    fn map_steps<'a, 's, D: Direction>(
        &'a self,
        steps: impl Iterator<Item = (Step, Option<&'s HostSeg<'s>>)> + Clone,
        mut out: SegBuf<'a, DmaSeg<B>>,
    ) -> Result<DmaVec<'a, B, D, Unsynced>, MapError> {
        // Pass 1: check every segment and the link rule, size the IOVA run.
        let mut iova_bytes: u64 = 0;
        let mut links = 0usize;
        let mut open_end = false;
        let mask = self.device.dma_mask();
        for (index, (step, _)) in steps.clone().enumerate() {
            let (start, len) = match step {
                Step::Link { phys, len, .. } | Step::Direct { phys, len } => (phys.as_u64(), len),
                Step::Bus { raw, len } => (raw, len),
                Step::Local { offset, len, .. } => (offset, len),
            };
            if len == 0 {
                return Err(MapError::EmptySegment { index });
            }
            let last = start
                .checked_add(len - 1)
                .ok_or(MapError::Overflow { start, len })?;
            match step {
                Step::Link { phys, len, .. } => {
                    let lead = phys.offset_in(GRANULE);
                    if open_end || (links > 0 && lead != 0) {
                        return Err(MapError::Unaligned {
                            index,
                            granule: GRANULE,
                        });
                    }
                    // The first link keeps its offset inside the granule.
                    let add = if links == 0 { lead + len } else { len };
                    iova_bytes = iova_bytes
                        .checked_add(add)
                        .ok_or(MapError::Overflow { start, len })?;
                    open_end = (iova_bytes % GRANULE) != 0;
                    links += 1;
                }
                Step::Direct { phys, .. } if last > mask => {
                    return Err(MapError::BeyondDmaMask {
                        index,
                        last: phys + (len - 1),
                        mask,
                    });
                }
                Step::Bus { .. } if last > mask => {
                    return Err(MapError::BeyondDmaMask {
                        index,
                        last: PhysAddr::new(last),
                        mask,
                    });
                }
                _ => {}
            }
        }

        // Reserve the whole run at once (dma_iova_try_alloc).
        let lease: Option<IovaLease<'a>> = match (self.iommu, links) {
            (Some(core), 1..) => {
                let granules = iova_bytes.div_ceil(GRANULE);
                let lease = usize::try_from(granules)
                    .ok()
                    .and_then(|g| core.reserve(g))
                    .ok_or(MapError::IovaExhausted { len: iova_bytes })?;
                Some(lease)
            }
            _ => None,
        };
        let perm = perm_bits(D::DEVICE_PERM, false);
        let mmio_bits = perm | perm_bits(crate::iommu::IommuPerm::empty(), true);
        // Hoisted out of the loop: the run's first IOVA (inside the
        // aperture, checked when the domain was made) and its entries.
        let (iova_start, entries) = match &lease {
            Some(lease) => (lease.start().as_u64(), lease.entries()),
            None => (0, &[][..]),
        };

        // Pass 2: link and emit. Caller-owned slots get a writer that keeps
        // the fill count in a register; a growable store goes through
        // `SegBuf` itself.
        out.clear();
        let ctx = EmitCtx {
            cache: &self.cache,
            iova_start,
            entries,
            perm,
            mmio_bits,
        };
        match out.slots_mut() {
            Some((slots, len)) => {
                let mut w = SlotWriter { slots, len: 0 };
                let r = ctx.emit::<D, _>(steps, &mut w);
                *len = w.len;
                r?;
            }
            None => ctx.emit::<D, _>(steps, &mut out)?,
        }
        Ok(DmaVec::from_parts(out, lease))
    }
}

/// Where pass 2 puts its segments.
trait Emit<B: Brand> {
    fn push(&mut self, seg: DmaSeg<B>) -> Result<(), MapError>;
    /// Stores the final length of the IOVA run that is the last segment.
    fn close_run(&mut self, run: u64);
}

impl<B: Brand> Emit<B> for SegBuf<'_, DmaSeg<B>> {
    #[inline(always)]
    fn push(&mut self, seg: DmaSeg<B>) -> Result<(), MapError> {
        SegBuf::push(self, seg)
    }

    #[inline(always)]
    fn close_run(&mut self, run: u64) {
        if let Some(DmaSeg::Wire { len, .. }) = self.last_mut() {
            *len = run;
        }
    }
}

/// Caller-owned slots with the fill count in a local.
struct SlotWriter<'x, B: Brand> {
    slots: &'x mut [MaybeUninit<DmaSeg<B>>],
    len: usize,
}

impl<B: Brand> Emit<B> for SlotWriter<'_, B> {
    #[inline(always)]
    fn push(&mut self, seg: DmaSeg<B>) -> Result<(), MapError> {
        let Some(slot) = self.slots.get_mut(self.len) else {
            return Err(MapError::OutOfCapacity {
                capacity: self.slots.len(),
            });
        };
        slot.write(seg);
        self.len += 1;
        Ok(())
    }

    #[inline(always)]
    fn close_run(&mut self, run: u64) {
        // The run's segment is the last one pushed.
        if let Some(slot) = self.len.checked_sub(1).and_then(|i| self.slots.get_mut(i)) {
            // SAFETY: slots[..len] were written by `push`.
            if let DmaSeg::Wire { len, .. } = unsafe { slot.assume_init_mut() } {
                *len = run;
            }
        }
    }
}

/// What pass 2 needs besides the steps.
struct EmitCtx<'e, C> {
    cache: &'e C,
    /// The run's first IOVA (inside the aperture, checked when the domain
    /// was made).
    iova_start: u64,
    /// The lease's entries, one per granule.
    entries: &'e [Cell<Pte>],
    perm: u64,
    mmio_bits: u64,
}

impl<C: CacheMaintenance> EmitCtx<'_, C> {
    /// Link and emit. `run_len`: the last output segment is an IOVA run of
    /// this many bytes so far that the next link may extend; the length is
    /// stored back when the run ends.
    #[inline(always)]
    fn emit<'s, D: Direction, B: Brand>(
        &self,
        steps: impl Iterator<Item = (Step, Option<&'s HostSeg<'s>>)>,
        out: &mut impl Emit<B>,
    ) -> Result<(), MapError> {
        let mut cursor: u64 = 0;
        let mut run_len: Option<u64> = None;
        for (step, host) in steps {
            if let Some(seg) = host {
                self.cache.sync_for_device::<D>(seg);
            }
            let seg = match step {
                Step::Link { phys, len, mmio } => {
                    let lead = phys.offset_in(GRANULE);
                    let at = if cursor == 0 { lead } else { cursor };
                    let first_granule = (at / GRANULE) as usize;
                    let granules = (lead + len).div_ceil(GRANULE) as usize;
                    let flags = if mmio { self.mmio_bits } else { self.perm };
                    write_ptes(
                        &self.entries[first_granule..first_granule + granules],
                        phys.align_down(GRANULE).as_u64(),
                        flags,
                    );
                    cursor = at + len;
                    if let Some(run) = &mut run_len {
                        *run += len;
                        continue;
                    }
                    out.push(DmaSeg::Wire {
                        addr: DmaAddr::from_raw(self.iova_start + at),
                        len,
                        via: Via::Iommu,
                    })?;
                    run_len = Some(len);
                    continue;
                }
                Step::Direct { phys, len } => DmaSeg::Wire {
                    addr: DmaAddr::from_raw(phys.as_u64()),
                    len,
                    via: Via::Direct,
                },
                Step::Bus { raw, len } => DmaSeg::Wire {
                    addr: DmaAddr::from_raw(raw),
                    len,
                    via: Via::BusAddr,
                },
                Step::Local { bar, offset, len } => DmaSeg::Local {
                    bar,
                    // SAFETY: minted by a SameDevice route from memory of
                    // the client's own BAR.
                    offset: unsafe { crate::addr::BarOffset::new_unchecked(offset) },
                    len,
                },
            };
            if let Some(run) = run_len.take() {
                out.close_run(run);
            }
            out.push(seg)?;
        }
        if let Some(run) = run_len {
            out.close_run(run);
        }
        Ok(())
    }
}

/// One entry per granule from `phys_granule` up, into a lease's entries.
#[inline(always)]
fn write_ptes(entries: &[Cell<Pte>], phys_granule: u64, flags: u64) {
    let mut pa = phys_granule;
    for e in entries {
        e.set(Pte::linked(pa, flags));
        pa = pa.wrapping_add(GRANULE);
    }
}

#[inline(always)]
fn switch_step<PB: Brand, B: Brand>(
    route: &Route<'_, PB, B, ViaSwitch>,
    seg: &P2pSeg<'_, PB>,
) -> Step {
    Step::Bus {
        raw: route.bus_addr(seg).as_u64(),
        len: seg.len(),
    }
}

#[inline(always)]
fn local_step<PB: Brand, B: Brand>(
    route: &Route<'_, PB, B, SameDevice>,
    seg: &P2pSeg<'_, PB>,
) -> Step {
    Step::Local {
        bar: route.bar(),
        offset: route.bar_offset(seg).as_u64(),
        len: seg.len(),
    }
}

impl<B: Brand, C: CacheMaintenance> fmt::Debug for Mapper<'_, B, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mapper")
            .field("device", &self.device)
            .field("iommu", &self.iommu.is_some())
            .finish()
    }
}

#[cfg(all(test, feature = "alloc"))]
mod tests {
    // Unit tests so that Miri (which runs the library's tests) checks the
    // unsafe slot handling of the hot path.
    use core::mem::MaybeUninit;

    use super::*;
    use crate::dir::ToDevice;
    use crate::host::SimulatedRam;
    use crate::iommu::Pte;
    use crate::provider::Provider;
    use crate::topology::Bdf;
    use crate::vec::{BvecSeg, SegOf};
    use crate::{BusAddr, Iova};

    #[test]
    fn mixed_request_into_caller_slots() {
        crate::brand!(Cmb);
        crate::brand!(Nic);
        crate::brand!(Dom);
        // SAFETY: simulated addresses, never given to hardware.
        let mut ram = unsafe { SimulatedRam::new(PhysAddr::new(0x10_0000), 3) };
        let mut pages: alloc::vec::Vec<_> = ram.pages().collect();
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
        let mut nic = Device::<Nic>::new(Bdf::new(0, 4, 0, 0), u64::MAX).unwrap();
        let mut table = [Pte::EMPTY; 8];
        // SAFETY: a software aperture.
        let dom =
            IommuDomain::<Dom>::new(unsafe { Iova::new_unchecked(0x8000) }, &mut table).unwrap();
        // SAFETY: test topology.
        let route: P2pRoute<'_, Cmb, Nic> = unsafe { Route::assume_via_switch(&p, &nic, 4) }.into();
        let m = Mapper::iommu(&mut nic, &dom);
        let [x, y, z] = &mut pages[..] else {
            unreachable!()
        };
        let bv: [BvecSeg<'_, Cmb>; 4] = [
            x.dma().into_bvec_seg(),
            y.dma().into_bvec_seg(),
            a.seg().into_bvec_seg(),
            z.dma().into_bvec_seg(),
        ];
        let mut slots = [MaybeUninit::uninit(); 3];
        let v = m
            .map_bvec::<ToDevice, _>(&bv, &route, SegBuf::from_slice(&mut slots))
            .unwrap()
            .sync();
        let lens: alloc::vec::Vec<u64> = v.device_reads().iter().map(DmaSeg::len).collect();
        assert_eq!(lens, [0x2000, 0x1000, 0x1000]);
        drop(v);
        assert_eq!(dom.reserved_granules(), 0);
        // One slot too few: an error, and nothing stays reserved.
        let mut slots = [MaybeUninit::uninit(); 2];
        let err = m
            .map_bvec::<ToDevice, _>(&bv, &route, SegBuf::from_slice(&mut slots))
            .unwrap_err();
        assert_eq!(err, MapError::OutOfCapacity { capacity: 2 });
        assert_eq!(dom.reserved_granules(), 0);
    }
}
