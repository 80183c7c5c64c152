//! Mappings that own their buffer: I/O that completes after the call that
//! mapped it, in any order (a queue's slot table).
//!
//! A [`MappedBuf`] holds the buffer, the IOVA run (if any) and the
//! segments. Who may touch the memory is in its type: [`DeviceOwned`]
//! gives out device addresses and no bytes, [`CpuOwned`] gives out bytes
//! and no addresses; `sync_for_cpu` and `sync_for_device` move between the
//! two on the live mapping, with the platform's cache maintenance.
//!
//! # Leaks
//! `mem::forget` on a `MappedBuf` leaks the IOVA run *and* the buffer
//! ([`DmaBuffer`]'s contract: the memory is freed only by the buffer's
//! drop), so a device address that stays linked never reaches memory that
//! was reused. This is the other answer to the problem scoped mappings
//! solve: own the memory, or borrow it only for a call.

use core::fmt;
use core::marker::PhantomData;
use core::ptr::NonNull;

use crate::brand::Brand;
use crate::dir::Direction;
use crate::error::{MapBufError, MapError};
use crate::host::{CacheCoherent, CacheMaintenance, CpuPages, DmaBuffer};
use crate::id::DeviceId;
use crate::iommu::LinkCursor;
use crate::sealed::Sealed;
use crate::vec::{DmaSeg, HostMem, HostSeg, SegBuf, SegSlot};
use crate::vec::{RawSeg, StateOf, Via};

use super::plan::{self, Step};
use super::translation::{Direct, Translation};
use super::{MapQueue, Mapper};
use crate::iommu::{Lease, LinkLease};

/// Who may touch the memory of a live [`MappedBuf`]: [`DeviceOwned`] or
/// [`CpuOwned`].
pub trait Owner: Sealed + 'static {
    /// Whether the device owns the memory.
    #[doc(hidden)]
    const DEVICE: bool;
    /// Its name, for messages.
    #[doc(hidden)]
    const NAME: &'static str;
}

/// The device owns the memory: addresses, no bytes.
#[derive(Debug)]
pub enum DeviceOwned {}
/// The CPU owns the memory: bytes, no addresses.
#[derive(Debug)]
pub enum CpuOwned {}
impl Sealed for DeviceOwned {}
impl Sealed for CpuOwned {}
impl Owner for DeviceOwned {
    const DEVICE: bool = true;
    const NAME: &'static str = "device";
}
impl Owner for CpuOwned {
    const DEVICE: bool = false;
    const NAME: &'static str = "CPU";
}

/// Whether a mapping is one I/O request, cut to the device's segment limits
/// (maximum size, boundary, count, alignment), or memory mapped whole for
/// the life of a ring or a pool, whose users check the limits for what
/// they hand the device (only the DMA mask applies to the whole).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Cut {
    /// One request: cut.
    AsRequest,
    /// A ring or a pool: whole.
    Whole,
}

/// The segments of a mapping: one, the common case, without allocating.
enum Segs {
    One(SegSlot),
    #[cfg(feature = "alloc")]
    Many(alloc::boxed::Box<[SegSlot]>),
}

impl Segs {
    fn as_raw(&self) -> &[RawSeg] {
        match self {
            Segs::One(s) => SegSlot::as_raw(core::slice::from_ref(s)),
            #[cfg(feature = "alloc")]
            Segs::Many(v) => SegSlot::as_raw(v),
        }
    }
}

/// A live mapping for device `K` in direction `D` that owns its buffer
/// `Buf`; `O` says whether the device or the CPU owns the memory now.
///
/// Made by [`Mapper::map_buf`] (or a queue's), already synced
/// (`dma_iova_sync`) and device-owned. It can be stored anywhere (a slot
/// table), moved to another thread when its parts allow, and gives the
/// buffer back with [`unmap`](Self::unmap).
///
/// ```
/// use dmaspace::prelude::*;
/// use dmaspace::host::{CpuAccessible, SimulatedRam};
/// use dmaspace::limits::DmaLimits;
/// dmaspace::brand!(Nvme);
/// dmaspace::brand!(Dom);
/// // SAFETY: a simulated device and simulated memory, never given to hardware.
/// let nvme = unsafe { Device::<Nvme>::new_unchecked(Bdf::new(0, 1, 0, 0), DmaLimits::BITS_64) };
/// let ram = unsafe { SimulatedRam::new(PhysAddr::new(0x10_0000), 4) };
/// let domain = IommuDomain::<Dom>::software(0x1_0000, 1 << 20)?;
/// let mapper = Mapper::iommu(&nvme, &domain)?;
///
/// // Map two buffers; they complete in the other order.
/// let mut slots = Vec::new();
/// for buf in ram.into_buffers(8192) {
///     slots.push(mapper.map_buf::<FromDevice, _>(buf).map_err(|e| e.error)?);
/// }
/// let seg = &slots[1].segments(nvme.id())?[0];
/// assert_eq!(seg.len(), 8192);
/// let second = slots.pop().unwrap().unmap();   // the buffer, unmapped
/// let mut first = slots.pop().unwrap().sync_for_cpu();
/// first.pages().cpu_bytes_mut()[0] = 7;          // CPU-owned: bytes, no addresses
/// let first = first.sync_for_device();           // and back to the device
/// assert_eq!(domain.reserved_granules(), 2);
/// drop(first);
/// assert_eq!(domain.reserved_granules(), 0);
/// # drop(second);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Invariants
/// - `segs` are the device addresses of `buf`'s memory, linked in `lease`
///   (through an IOMMU) or its physical addresses (direct), for `device`.
/// - While `O` is [`DeviceOwned`], the CPU holds no reference to the
///   bytes; while [`CpuOwned`], no address of the mapping is given out.
///   A [`RegisteredPool`](crate::map::RegisteredPool) splits this by slot:
///   its buffer stays device-owned as a whole, never gives out the whole
///   buffer's segments, and each slot is CPU- or device-owned on its own
///   (synced by itself), so a slot's bytes and its address are never out at
///   once.
///
/// Drop order (declaration order): the lease first, which unmaps; the
/// buffer after, so its memory is never freed while mapped.
pub struct MappedBuf<
    'q,
    K: Brand,
    D: Direction,
    Buf: DmaBuffer,
    T: Translation + 'q = Direct,
    C: CacheMaintenance = CacheCoherent,
    O: Owner = DeviceOwned,
> {
    lease: Option<T::Lease<'q>>,
    segs: Segs,
    buf: Buf,
    cache: &'q C,
    device: DeviceId,
    _state: StateOf<K, D, O>,
}

impl<'d, K: Brand, T: Translation, C: CacheMaintenance> Mapper<'d, K, T, C> {
    /// Maps `buf` for the device in direction `D`, and keeps it mapped
    /// until the returned mapping is unmapped or dropped.
    ///
    /// # Errors
    /// As [`Mapper::map_host`] for the buffer's one segment; the buffer
    /// comes back in the error. With `DmaLimits` that cut segments and no
    /// `alloc` feature, a mapping that needs more than one segment is
    /// refused with [`MapError::OutOfCapacity`].
    ///
    /// See [`MappedBuf`].
    #[inline]
    pub fn map_buf<D: Direction, Buf: DmaBuffer>(
        &self,
        buf: Buf,
    ) -> Result<MappedBuf<'_, K, D, Buf, T, C>, MapBufError<Buf>> {
        self.map_buf_in(None, buf, Cut::AsRequest)
    }

    /// [`map_buf`](Self::map_buf) with IOVA space from `cache`, if any,
    /// cut to the device's segment limits or mapped whole.
    ///
    /// Inlined, so that the mapping is built where the caller keeps it (a
    /// value of some 120 bytes, moved through memory otherwise); a request
    /// that is cut takes [`map_buf_cut`](Self::map_buf_cut).
    #[inline(always)]
    pub(super) fn map_buf_in<'q, 'c, D: Direction, Buf: DmaBuffer>(
        &'q self,
        cache: Option<&'c T::Cache<'q>>,
        mut buf: Buf,
        cut: Cut,
    ) -> Result<MappedBuf<'c, K, D, Buf, T, C>, MapBufError<Buf>>
    where
        'q: 'c,
    {
        let cut = cut == Cut::AsRequest;
        if cut && self.device().limits().cuts_segments() {
            return self.map_buf_cut(cache, buf);
        }
        // One segment out, as the general passes would give.
        let one = {
            let mut pages = buf.pages();
            self.map_one::<D>(cache, &pages.dma())
        };
        match one {
            Ok((lease, raw)) => Ok(self.owned(lease, Segs::One(SegSlot::new(raw)), buf)),
            Err(error) => Err(MapBufError { error, buffer: buf }),
        }
    }

    /// [`map_buf_in`](Self::map_buf_in) of a request cut to the device's
    /// segment limits: the general passes.
    #[inline(never)]
    fn map_buf_cut<'q, 'c, D: Direction, Buf: DmaBuffer>(
        &'q self,
        cache: Option<&'c T::Cache<'q>>,
        mut buf: Buf,
    ) -> Result<MappedBuf<'c, K, D, Buf, T, C>, MapBufError<Buf>>
    where
        'q: 'c,
    {
        let mapped = {
            let mut pages = buf.pages();
            let seg = pages.dma();
            let steps = core::iter::once((plan::host_step::<T>(&seg), Some(&seg)));
            #[cfg(feature = "alloc")]
            {
                let mut out = SegBuf::with_capacity(1);
                self.map_into::<D>(cache, steps, &mut out, true)
                    .map(|lease| {
                        let segs = out.as_raw().iter().map(|r| SegSlot::new(*r)).collect();
                        (lease, Segs::Many(segs))
                    })
            }
            #[cfg(not(feature = "alloc"))]
            {
                // Without `alloc`, room for one segment: more is refused.
                let mut one = [SegSlot::EMPTY];
                let mut out = SegBuf::from_slots(&mut one);
                self.map_into::<D>(cache, steps, &mut out, true)
                    .map(|lease| (lease, Segs::One(one[0])))
            }
        };
        match mapped {
            Ok((lease, segs)) => {
                if let Some(l) = &lease {
                    l.sync();
                }
                Ok(self.owned(lease, segs, buf))
            }
            Err(error) => Err(MapBufError { error, buffer: buf }),
        }
    }

    /// The mapping of `buf`, linked in `lease` (synced) as `segs` say.
    #[inline(always)]
    fn owned<'c, D: Direction, Buf: DmaBuffer>(
        &'c self,
        lease: Option<T::Lease<'c>>,
        segs: Segs,
        buf: Buf,
    ) -> MappedBuf<'c, K, D, Buf, T, C> {
        // INVARIANT: `segs` (in `lease`) are the mapping just made of `buf`'s memory for
        // this mapper's device; device-owned: the `pages` borrow that made them ended.
        MappedBuf {
            lease,
            segs,
            buf,
            cache: self.cache(),
            device: self.device().id(),
            _state: PhantomData,
        }
    }

    /// The general passes (`plan`, reserve, `emit`, then `dma_iova_sync`)
    /// for a request of the one host segment `seg` that is not cut, without
    /// their iterators and output buffer: the same checks in the same
    /// order, so the same errors, and the same segment.
    ///
    /// # Errors
    /// As [`Mapper::map_host`] for `[seg]`.
    #[inline(always)]
    pub(super) fn map_one<'q, 'c, D: Direction>(
        &'q self,
        cache: Option<&'c T::Cache<'q>>,
        seg: &HostSeg<'_>,
    ) -> Result<(Option<T::Lease<'c>>, RawSeg), MapError>
    where
        'q: 'c,
    {
        let step = plan::host_step::<T>(seg);
        let mask = self.device().limits().dma_mask();
        let plan = plan::plan(core::iter::once((step, None)), mask)?;
        match step {
            Step::Link {
                addr, len, mmio, ..
            } => {
                let bytes = plan.run.bytes();
                let lease = self
                    .translation
                    .reserve(cache, bytes, mask)
                    .ok_or(MapError::IovaExhausted { len: bytes })?;
                self.cache.sync_for_device::<D>(seg);
                let placed = LinkCursor::default().advance(addr, len);
                // SAFETY: the buffer behind `seg` is moved into the mapping
                // with the lease, which unlinks (drops first) before the
                // buffer can be freed or touched by the CPU again
                // (`MappedBuf`'s invariants); on error the lease drops here.
                // `placed` is the whole run: a fresh cursor's first link.
                unsafe { lease.link_synced(D::DEVICE_PERM, placed, addr, mmio) }?;
                let raw = RawSeg::wire(lease.start() + placed.at, len, Via::Iommu);
                Ok((Some(lease), raw))
            }
            Step::Direct { phys, len } => {
                self.cache.sync_for_device::<D>(seg);
                Ok((None, RawSeg::wire(phys.as_u64(), len, Via::Direct)))
            }
            // A host segment is one of the two above or `NoPhysAddr`, which
            // the plan refused.
            Step::NoPhysAddr
            | Step::Bus { .. }
            | Step::OwnBar { .. }
            | Step::Foreign
            | Step::NoCpuMapping => Err(MapError::NoPhysAddr { index: 0 }),
        }
    }
}

impl<'m, K: Brand, T: Translation, C: CacheMaintenance> MapQueue<'m, '_, K, T, C> {
    /// [`Mapper::map_buf`] through this queue's cache of IOVA space.
    ///
    /// # Errors
    /// As [`Mapper::map_buf`].
    ///
    /// See `examples/nvme_multiqueue/main.rs`.
    #[inline]
    pub fn map_buf<D: Direction, Buf: DmaBuffer>(
        &self,
        buf: Buf,
    ) -> Result<MappedBuf<'_, K, D, Buf, T, C>, MapBufError<Buf>> {
        self.mapper
            .map_buf_in(Some(&self.cache), buf, Cut::AsRequest)
    }
}

impl<'q, K: Brand, D: Direction, Buf: DmaBuffer, T: Translation, C: CacheMaintenance, O: Owner>
    MappedBuf<'q, K, D, Buf, T, C, O>
{
    /// The device this mapping is for.
    ///
    /// See [`MappedBuf`].
    #[must_use]
    pub fn device(&self) -> DeviceId {
        self.device
    }

    /// The first IOVA of the mapping, if it went through an IOMMU (for
    /// tests and logs).
    ///
    /// See `tests/owned.rs`.
    #[must_use]
    pub fn iova_range_start(&self) -> Option<u64> {
        self.lease.as_ref().map(Lease::start)
    }

    /// Unmaps and gives the buffer back. A device-owned mapping is synced
    /// for the CPU first, so the CPU sees what the device wrote.
    ///
    /// See [`MappedBuf`].
    #[inline]
    pub fn unmap(mut self) -> Buf {
        if O::DEVICE && !C::NOTHING_TO_DO {
            self.cache.sync_for_cpu::<D>(&self.buf.pages().dma());
        }
        let MappedBuf { lease, buf, .. } = self;
        // Unmapped here, before the buffer leaves.
        drop(lease);
        buf
    }

    /// Where the buffer's bytes are, for an owner that reaches them only
    /// by raw pointer while the mapping lives (coherent memory, a pool).
    /// The pointer stays valid while the mapping lives (the buffer's
    /// contract, point 4).
    #[expect(
        clippy::cast_possible_truncation,
        reason = "the length of a buffer the CPU holds, a usize"
    )]
    pub(super) fn cpu_ptr(&mut self) -> (NonNull<u8>, usize) {
        let pages = self.buf.pages();
        (pages.as_ptr(), pages.len() as usize)
    }

    /// Physical address of the buffer's first byte, if known.
    #[cfg(feature = "alloc")]
    pub(super) fn phys(&mut self) -> Option<crate::addr::PhysAddr> {
        self.buf.pages().phys()
    }

    /// The segments, for the crate's own owners (a pool).
    #[cfg(feature = "alloc")]
    pub(super) fn raw_segments(&self) -> &[RawSeg] {
        self.segs.as_raw()
    }

    /// The platform's cache maintenance.
    #[cfg(feature = "alloc")]
    pub(super) fn cache_ref(&self) -> &'q C {
        self.cache
    }

    /// The same mapping, now owned by `O2` (the caller did the sync).
    fn owned_by<O2: Owner>(self) -> MappedBuf<'q, K, D, Buf, T, C, O2> {
        let MappedBuf {
            lease,
            segs,
            buf,
            cache,
            device,
            _state,
        } = self;
        // INVARIANT: the mapping moves unchanged; `self` is consumed after the caller's
        // sync, so no byte borrow (`pages`) or address (`segments`) of it outlives the move.
        MappedBuf {
            lease,
            segs,
            buf,
            cache,
            device,
            _state: PhantomData,
        }
    }
}

impl<'q, K: Brand, D: Direction, Buf: DmaBuffer, T: Translation, C: CacheMaintenance>
    MappedBuf<'q, K, D, Buf, T, C, DeviceOwned>
{
    /// The segments, for a descriptor of `device` (the device whose queue
    /// the driver is filling). Borrowed from the mapping: they cannot
    /// outlive it, nor a move to the CPU.
    ///
    /// # Errors
    /// [`MapError::WrongDevice`] if `device` is not the one the mapping was
    /// made for.
    ///
    /// See [`MappedBuf`].
    pub fn segments(&self, device: DeviceId) -> Result<&[DmaSeg<K, D, HostMem>], MapError> {
        if device != self.device {
            return Err(MapError::WrongDevice);
        }
        Ok(DmaSeg::host_slice(self.segs.as_raw()))
    }

    /// Hands the memory to the CPU (`dma_sync_single_for_cpu`): the mapping
    /// stays live, its addresses are out of reach until
    /// [`sync_for_device`](MappedBuf::sync_for_device).
    ///
    /// See [`MappedBuf`].
    #[must_use = "dropping it unmaps"]
    pub fn sync_for_cpu(mut self) -> MappedBuf<'q, K, D, Buf, T, C, CpuOwned> {
        if !C::NOTHING_TO_DO {
            self.cache.sync_for_cpu::<D>(&self.buf.pages().dma());
        }
        self.owned_by()
    }
}

impl<'q, K: Brand, D: Direction, Buf: DmaBuffer, T: Translation, C: CacheMaintenance>
    MappedBuf<'q, K, D, Buf, T, C, CpuOwned>
{
    /// The memory, for the CPU to read or write. Not for a device: it is
    /// still linked for this mapping, and [`CpuPages`] has no `dma()`.
    ///
    /// See [`MappedBuf`].
    pub fn pages(&mut self) -> CpuPages<'_> {
        CpuPages::new(self.buf.pages())
    }

    /// Hands the memory back to the device (`dma_sync_single_for_device`).
    ///
    /// See [`MappedBuf`].
    #[must_use = "dropping it unmaps"]
    pub fn sync_for_device(mut self) -> MappedBuf<'q, K, D, Buf, T, C, DeviceOwned> {
        if !C::NOTHING_TO_DO {
            self.cache.sync_for_device::<D>(&self.buf.pages().dma());
        }
        self.owned_by()
    }
}

impl<K: Brand, D: Direction, Buf: DmaBuffer, T: Translation, C: CacheMaintenance, O: Owner>
    fmt::Debug for MappedBuf<'_, K, D, Buf, T, C, O>
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MappedBuf")
            .field("device", &K::NAME)
            .field("direction", &D::NAME)
            .field("owner", &O::NAME)
            .field(
                "segments",
                &DmaSeg::<K, D, HostMem>::host_slice(self.segs.as_raw()),
            )
            .finish()
    }
}

#[cfg(all(test, feature = "alloc"))]
mod tests {
    //! The one-segment fast path (`map_one`) against the general passes
    //! (`map_into`) on the same segment: the same segment out, the same
    //! error, the same entries in the page table, nothing left behind.
    use core::ptr::NonNull;

    use super::*;
    use crate::addr::PhysAddr;
    use crate::device::Device;
    use crate::dir::{IommuPerm, ToDevice};
    use crate::host::HostPages;
    use crate::iommu::{GRANULE, IommuDomain};
    use crate::limits::DmaLimits;
    use dmaspace_pci::Bdf;

    crate::brand!(Dev);
    crate::brand!(Dom);

    /// What a mapping gave: its segment and its lease's start, and what the
    /// device reaches at the segment's first and last byte while it lives.
    type Seen = Result<(RawSeg, Option<u64>, [Option<PhysAddr>; 2]), MapError>;

    fn general<T: Translation>(
        m: &Mapper<'_, Dev, T>,
        seg: &HostSeg<'_>,
        reach: &dyn Fn(u64) -> Option<PhysAddr>,
    ) -> Seen {
        let mut one = [SegSlot::EMPTY];
        let mut out = SegBuf::from_slots(&mut one);
        let steps = core::iter::once((plan::host_step::<T>(seg), Some(seg)));
        let lease = m.map_into::<ToDevice>(None, steps, &mut out, true)?;
        if let Some(l) = &lease {
            l.sync();
        }
        let raw = out.as_raw()[0];
        let seen = [reach(raw.addr), reach(raw.addr + raw.len - 1)];
        Ok((raw, lease.as_ref().map(Lease::start), seen))
    }

    fn fast<T: Translation>(
        m: &Mapper<'_, Dev, T>,
        seg: &HostSeg<'_>,
        reach: &dyn Fn(u64) -> Option<PhysAddr>,
    ) -> Seen {
        let (lease, raw) = m.map_one::<ToDevice>(None, seg)?;
        let seen = [reach(raw.addr), reach(raw.addr + raw.len - 1)];
        Ok((raw, lease.as_ref().map(Lease::start), seen))
    }

    /// Segments of `mem` at made-up physical addresses: aligned, two
    /// pages, sub-page, empty, unknown physical address, near the top.
    fn cases(mem: &mut [u8]) -> std::vec::Vec<HostPages<'_>> {
        assert!(mem.len() >= 32 * GRANULE as usize);
        let p = NonNull::from(&mut *mem).cast::<u8>();
        let g = GRANULE as usize;
        let at = |off: usize| {
            // SAFETY: `off` is inside `mem`.
            unsafe { p.add(off) }
        };
        let list: [(usize, usize, Option<u64>); 8] = [
            (0, g, Some(0x10_0000)),
            (0, 2 * g, Some(0x20_0000)),
            (0x200, 0xe00, Some(0x30_0200)),
            (0, 0, Some(0x40_0000)),
            (0, g, None),
            (0, g, Some(u64::MAX - GRANULE + 1)),
            (0, g, Some(0x1_0000_0000)),
            (g, 3 * g, Some(0x5000_0000)),
        ];
        // Case `i` in its own 4 pages of `mem`.
        list.iter()
            .enumerate()
            .map(|(i, &(off, len, phys))| {
                // SAFETY: `[off, off + len)` of case `i`'s 4 pages lies in
                // `mem` (32 pages), disjoint from the other cases'; the
                // pages are only given to the software IOMMU and to the
                // direct mapper's arithmetic, never read or written.
                unsafe {
                    HostPages::from_raw_parts(at(4 * g * i + off), len, phys.map(PhysAddr::new))
                }
                .unwrap()
            })
            .collect()
    }

    #[test]
    fn one_segment_fast_path_equals_the_general_passes() {
        let mut mem = std::vec![0u8; 32 * GRANULE as usize];
        let n = cases(&mut mem).len();
        for bits in [48, 32] {
            // SAFETY: simulated devices; nothing reaches hardware.
            let dev = unsafe {
                Device::<Dev>::new_unchecked(Bdf::new(0, 1, 0, 0), DmaLimits::bits(bits))
            };
            // A domain above 4 GiB (256 granules: `any_mapped` below scans
            // each, and Miri runs this test), and one of one granule.
            for (base, len) in [(1u64 << 32, 1u64 << 20), (0x10_0000, GRANULE)] {
                let dom = IommuDomain::<Dom>::software(base, len).unwrap();
                let m = Mapper::iommu(&dev, &dom).unwrap();
                let reach = |a: u64| dom.translate(a, IommuPerm::READ).ok();
                for i in 0..n {
                    let mut pages = cases(&mut mem);
                    let seg = pages[i].dma();
                    let g = general(&m, &seg, &reach);
                    assert_eq!(dom.reserved_granules(), 0);
                    let f = fast(&m, &seg, &reach);
                    assert_eq!(f, g, "case {i}, {bits}-bit mask, domain {base:#x}");
                    assert_eq!(dom.reserved_granules(), 0);
                    assert!(!dom.backend().any_mapped(base, len));
                }
                drop(m);
            }
            // SAFETY: the simulated device reaches the made-up addresses.
            let m = unsafe { Mapper::direct(&dev) }.unwrap();
            for i in 0..n {
                let mut pages = cases(&mut mem);
                let seg = pages[i].dma();
                let g = general(&m, &seg, &|_| None);
                let f = fast(&m, &seg, &|_| None);
                assert_eq!(f, g, "direct, case {i}, {bits}-bit mask");
            }
        }
    }

    #[test]
    fn the_cases_cover_every_outcome() {
        let mut mem = std::vec![0u8; 32 * GRANULE as usize];
        // SAFETY: a simulated device.
        let dev =
            unsafe { Device::<Dev>::new_unchecked(Bdf::new(0, 1, 0, 0), DmaLimits::bits(32)) };
        let dom = IommuDomain::<Dom>::software(0x10_0000, GRANULE).unwrap();
        let m = Mapper::iommu(&dev, &dom).unwrap();
        let got: std::vec::Vec<_> = (0..cases(&mut mem).len())
            .map(|i| {
                let mut pages = cases(&mut mem);
                let seg = pages[i].dma();
                fast(&m, &seg, &|_| None).map(|_| ())
            })
            .collect();
        assert_eq!(
            got,
            [
                Ok(()),
                Err(MapError::IovaExhausted { len: 2 * GRANULE }),
                Err(MapError::PartialGranule {
                    index: 0,
                    granule: GRANULE
                }),
                Err(MapError::EmptySegment { index: 0 }),
                Err(MapError::NoPhysAddr { index: 0 }),
                Ok(()),
                Ok(()),
                Err(MapError::IovaExhausted { len: 3 * GRANULE }),
            ]
        );
        drop(m);
        // SAFETY: as above.
        let m = unsafe { Mapper::direct(&dev) }.unwrap();
        let beyond = (0..cases(&mut mem).len())
            .filter(|&i| {
                let mut pages = cases(&mut mem);
                let seg = pages[i].dma();
                matches!(
                    fast(&m, &seg, &|_| None),
                    Err(MapError::BeyondDmaMask { .. })
                )
            })
            .count();
        assert_eq!(beyond, 2, "the top page and the page at 4 GiB");
    }
}
