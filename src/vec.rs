//! Typed vectors: host pages ([`PfnVec`]), a request of host and P2P
//! segments ([`BvecP2p`]), and what a mapper returns ([`DmaVec`]).
//!
//! Each carries its address space in its type: a [`PfnVec`] holds only host
//! segments, a [`BvecP2p`] holds host segments and segments of one P2P
//! provider (the provider is a type parameter, so two providers cannot
//! mix), and a [`DmaVec`] is branded by the device it was mapped for, its
//! direction, and whether its IOVA range was synced.

use core::fmt;
use core::marker::PhantomData;
use core::mem::MaybeUninit;

use crate::addr::{BarOffset, DmaAddr, PhysAddr};
use crate::brand::Brand;
use crate::dir::{DeviceReads, DeviceWrites, Direction};
use crate::error::MapError;
use crate::iommu::IovaLease;

/// A physically contiguous range of host RAM handed to the device side.
/// Made by [`crate::host::HostPages::dma`]; while it (or a mapping of it)
/// lives, the CPU cannot touch the bytes.
pub struct HostSeg<'m> {
    phys: PhysAddr,
    len: u64,
    _mem: PhantomData<&'m mut [u8]>,
}

impl HostSeg<'_> {
    pub(crate) fn new(phys: PhysAddr, len: u64) -> Self {
        Self {
            phys,
            len,
            _mem: PhantomData,
        }
    }

    /// Physical address of the first byte.
    ///
    /// ```
    /// # let mut b = [0u8; 8];
    /// # // SAFETY: doc example, never mapped for hardware.
    /// # let mut p = unsafe { dmaspace::host::HostPages::new(&mut b, dmaspace::PhysAddr::new(0x3000)) }?;
    /// assert_eq!(p.dma().phys().as_u64(), 0x3000);
    /// # Ok::<(), dmaspace::error::MapError>(())
    /// ```
    #[must_use]
    pub fn phys(&self) -> PhysAddr {
        self.phys
    }

    /// Length in bytes.
    ///
    /// ```
    /// # let mut b = [0u8; 8];
    /// # // SAFETY: doc example, never mapped for hardware.
    /// # let mut p = unsafe { dmaspace::host::HostPages::new(&mut b, dmaspace::PhysAddr::new(0x3000)) }?;
    /// assert_eq!(p.dma().len(), 8);
    /// # Ok::<(), dmaspace::error::MapError>(())
    /// ```
    #[must_use]
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the segment is empty (mappers refuse empty segments).
    ///
    /// ```
    /// # let mut b = [0u8; 8];
    /// # // SAFETY: doc example, never mapped for hardware.
    /// # let mut p = unsafe { dmaspace::host::HostPages::new(&mut b, dmaspace::PhysAddr::new(0x3000)) }?;
    /// assert!(!p.dma().is_empty());
    /// # Ok::<(), dmaspace::error::MapError>(())
    /// ```
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Clone for HostSeg<'_> {
    fn clone(&self) -> Self {
        *self
    }
}
impl Copy for HostSeg<'_> {}
impl fmt::Debug for HostSeg<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HostSeg({:?} + {:#x})", self.phys, self.len)
    }
}

/// A range of P2P memory of provider `PB` (a BAR of a PCI device). The CPU
/// never touches it; only a route ([`crate::route`]) turns it into
/// something a device can use.
pub struct P2pSeg<'m, PB: Brand> {
    phys: PhysAddr,
    len: u64,
    _mem: SharedOf<'m, PB>,
}

/// A shared borrow of provider `PB`'s memory.
type SharedOf<'m, PB> = PhantomData<(&'m (), fn() -> PB)>;

impl<PB: Brand> P2pSeg<'_, PB> {
    pub(crate) fn new(phys: PhysAddr, len: u64) -> Self {
        Self {
            phys,
            len,
            _mem: PhantomData,
        }
    }

    /// CPU physical address of the first byte (inside the provider's BAR).
    ///
    /// ```
    /// # fn f<PB: dmaspace::Brand>(seg: dmaspace::vec::P2pSeg<'_, PB>) {
    /// let _ = seg.phys();
    /// # }
    /// ```
    #[must_use]
    pub fn phys(&self) -> PhysAddr {
        self.phys
    }

    /// Length in bytes.
    ///
    /// ```
    /// # fn f<PB: dmaspace::Brand>(seg: dmaspace::vec::P2pSeg<'_, PB>) {
    /// let _ = seg.len();
    /// # }
    /// ```
    #[must_use]
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the segment is empty.
    ///
    /// ```
    /// # fn f<PB: dmaspace::Brand>(seg: dmaspace::vec::P2pSeg<'_, PB>) {
    /// let _ = seg.is_empty();
    /// # }
    /// ```
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl<PB: Brand> Clone for P2pSeg<'_, PB> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<PB: Brand> Copy for P2pSeg<'_, PB> {}
impl<PB: Brand> fmt::Debug for P2pSeg<'_, PB> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "P2pSeg<{}>({:?} + {:#x})", PB::NAME, self.phys, self.len)
    }
}

/// One segment of a [`BvecP2p`]: host memory, or memory of provider `PB`.
pub enum BvecSeg<'m, PB: Brand> {
    /// Host RAM.
    Host(HostSeg<'m>),
    /// Memory of the request's one P2P provider.
    P2p(P2pSeg<'m, PB>),
}

impl<PB: Brand> BvecSeg<'_, PB> {
    /// Length in bytes.
    ///
    /// ```
    /// # let mut b = [0u8; 8];
    /// # // SAFETY: doc example, never mapped for hardware.
    /// # let mut p = unsafe { dmaspace::host::HostPages::new(&mut b, dmaspace::PhysAddr::new(0)) }?;
    /// dmaspace::brand!(Prov);
    /// let s = dmaspace::vec::BvecSeg::<Prov>::Host(p.dma());
    /// assert_eq!(s.len(), 8);
    /// # Ok::<(), dmaspace::error::MapError>(())
    /// ```
    #[must_use]
    pub fn len(&self) -> u64 {
        match self {
            BvecSeg::Host(s) => s.len(),
            BvecSeg::P2p(s) => s.len(),
        }
    }

    /// Whether the segment is empty.
    ///
    /// ```
    /// # let mut b = [0u8; 0];
    /// # // SAFETY: doc example, never mapped for hardware.
    /// # let mut p = unsafe { dmaspace::host::HostPages::new(&mut b, dmaspace::PhysAddr::new(0)) }?;
    /// # dmaspace::brand!(Prov);
    /// assert!(dmaspace::vec::BvecSeg::<Prov>::Host(p.dma()).is_empty());
    /// # Ok::<(), dmaspace::error::MapError>(())
    /// ```
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<PB: Brand> Clone for BvecSeg<'_, PB> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<PB: Brand> Copy for BvecSeg<'_, PB> {}
impl<PB: Brand> fmt::Debug for BvecSeg<'_, PB> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BvecSeg::Host(s) => s.fmt(f),
            BvecSeg::P2p(s) => s.fmt(f),
        }
    }
}

/// Memory that may join a request of provider `PB`: host segments and
/// segments of `PB` itself, nothing else.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot join a request of P2P provider `{PB}`",
    label = "memory of another provider",
    note = "one request holds host memory and memory of ONE P2P provider (the block layer's rule); map the other provider's memory in a request of its own"
)]
pub trait SegOf<'m, PB: Brand> {
    /// The segment as an element of a request.
    fn into_bvec_seg(self) -> BvecSeg<'m, PB>;
}

impl<'m, PB: Brand> SegOf<'m, PB> for HostSeg<'m> {
    fn into_bvec_seg(self) -> BvecSeg<'m, PB> {
        BvecSeg::Host(self)
    }
}
impl<'m, PB: Brand> SegOf<'m, PB> for P2pSeg<'m, PB> {
    fn into_bvec_seg(self) -> BvecSeg<'m, PB> {
        BvecSeg::P2p(self)
    }
}
impl<'m, PB: Brand> SegOf<'m, PB> for BvecSeg<'m, PB> {
    fn into_bvec_seg(self) -> BvecSeg<'m, PB> {
        self
    }
}

/// Host pages: the only memory the CPU may touch, bounce or sync. Holds
/// [`HostSeg`]s and nothing else.
///
/// ```
/// use dmaspace::{host::SimulatedRam, vec::PfnVec, PhysAddr};
/// // SAFETY: simulated addresses, never given to hardware.
/// let mut ram = unsafe { SimulatedRam::new(PhysAddr::new(0x10000), 2) };
/// let mut pages: Vec<_> = ram.pages().collect();
/// let v: PfnVec = pages.iter_mut().map(|p| p.dma()).collect();
/// assert_eq!(v.total_len(), 8192);
/// ```
#[cfg(feature = "alloc")]
#[derive(Debug, Default)]
pub struct PfnVec<'m> {
    segs: alloc::vec::Vec<HostSeg<'m>>,
}

#[cfg(feature = "alloc")]
impl<'m> PfnVec<'m> {
    /// An empty vector.
    ///
    /// ```
    /// assert!(dmaspace::vec::PfnVec::new().is_empty());
    /// ```
    #[must_use]
    pub fn new() -> Self {
        Self {
            segs: alloc::vec::Vec::new(),
        }
    }

    /// Appends a host segment.
    ///
    /// ```
    /// # let mut b = [0u8; 8];
    /// # // SAFETY: doc example, never mapped for hardware.
    /// # let mut p = unsafe { dmaspace::host::HostPages::new(&mut b, dmaspace::PhysAddr::new(0)) }?;
    /// let mut v = dmaspace::vec::PfnVec::new();
    /// v.push(p.dma());
    /// assert_eq!(v.len(), 1);
    /// # Ok::<(), dmaspace::error::MapError>(())
    /// ```
    pub fn push(&mut self, seg: HostSeg<'m>) {
        self.segs.push(seg);
    }

    /// Total bytes.
    ///
    /// ```
    /// assert_eq!(dmaspace::vec::PfnVec::new().total_len(), 0);
    /// ```
    #[must_use]
    pub fn total_len(&self) -> u64 {
        self.segs.iter().map(HostSeg::len).sum()
    }
}

#[cfg(feature = "alloc")]
impl<'m> core::ops::Deref for PfnVec<'m> {
    type Target = [HostSeg<'m>];
    fn deref(&self) -> &[HostSeg<'m>] {
        &self.segs
    }
}

#[cfg(feature = "alloc")]
impl<'m> FromIterator<HostSeg<'m>> for PfnVec<'m> {
    fn from_iter<I: IntoIterator<Item = HostSeg<'m>>>(iter: I) -> Self {
        Self {
            segs: iter.into_iter().collect(),
        }
    }
}

/// One I/O request: host segments and segments of exactly one P2P
/// provider `PB`, in order. Segments of another provider have another
/// type and cannot be pushed.
///
/// Without the `alloc` feature, a plain slice `&[BvecSeg<'_, PB>]` is the
/// same thing; mappers take slices, and this derefs to one.
///
/// ```
/// use dmaspace::vec::{BvecP2p, BvecSeg};
/// # let mut b = [0u8; 8];
/// # // SAFETY: doc example, never mapped for hardware.
/// # let mut p = unsafe { dmaspace::host::HostPages::new(&mut b, dmaspace::PhysAddr::new(0)) }?;
/// dmaspace::brand!(Cmb);
/// let mut bv = BvecP2p::<Cmb>::new();
/// bv.push(p.dma());
/// assert_eq!((bv.len(), bv.total_len()), (1, 8));
/// # Ok::<(), dmaspace::error::MapError>(())
/// ```
#[cfg(feature = "alloc")]
pub struct BvecP2p<'m, PB: Brand> {
    segs: alloc::vec::Vec<BvecSeg<'m, PB>>,
}

#[cfg(feature = "alloc")]
impl<'m, PB: Brand> BvecP2p<'m, PB> {
    /// An empty request.
    ///
    /// ```
    /// dmaspace::brand!(P);
    /// assert!(dmaspace::vec::BvecP2p::<P>::new().is_empty());
    /// ```
    #[must_use]
    pub fn new() -> Self {
        Self {
            segs: alloc::vec::Vec::new(),
        }
    }

    /// An empty request with room for `n` segments.
    ///
    /// ```
    /// dmaspace::brand!(P);
    /// assert!(dmaspace::vec::BvecP2p::<P>::with_capacity(8).is_empty());
    /// ```
    #[must_use]
    pub fn with_capacity(n: usize) -> Self {
        Self {
            segs: alloc::vec::Vec::with_capacity(n),
        }
    }

    /// Appends a host segment or a segment of provider `PB`.
    ///
    /// ```
    /// # let mut b = [0u8; 8];
    /// # // SAFETY: doc example, never mapped for hardware.
    /// # let mut p = unsafe { dmaspace::host::HostPages::new(&mut b, dmaspace::PhysAddr::new(0)) }?;
    /// # dmaspace::brand!(P);
    /// let mut bv = dmaspace::vec::BvecP2p::<P>::new();
    /// bv.push(p.dma());
    /// # Ok::<(), dmaspace::error::MapError>(())
    /// ```
    pub fn push(&mut self, seg: impl SegOf<'m, PB>) {
        self.segs.push(seg.into_bvec_seg());
    }

    /// Total bytes.
    ///
    /// ```
    /// # dmaspace::brand!(P);
    /// assert_eq!(dmaspace::vec::BvecP2p::<P>::new().total_len(), 0);
    /// ```
    #[must_use]
    pub fn total_len(&self) -> u64 {
        self.segs.iter().map(BvecSeg::len).sum()
    }
}

#[cfg(feature = "alloc")]
impl<PB: Brand> Default for BvecP2p<'_, PB> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(feature = "alloc")]
impl<'m, PB: Brand> core::ops::Deref for BvecP2p<'m, PB> {
    type Target = [BvecSeg<'m, PB>];
    fn deref(&self) -> &[BvecSeg<'m, PB>] {
        &self.segs
    }
}

#[cfg(feature = "alloc")]
impl<PB: Brand> fmt::Debug for BvecP2p<'_, PB> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.segs.iter()).finish()
    }
}

/// Caller-chosen storage for a mapper's output: a slice the caller owns
/// (works without `alloc`, never allocates) or, with `alloc`, a `Vec`.
///
/// ```
/// use core::mem::MaybeUninit;
/// use dmaspace::vec::{DmaSeg, SegBuf};
/// dmaspace::brand!(Dev);
/// let mut slots = [MaybeUninit::<DmaSeg<Dev>>::uninit(); 16];
/// let buf = SegBuf::from_slice(&mut slots);
/// assert_eq!(buf.capacity(), 16);
/// ```
pub struct SegBuf<'o, T: Copy> {
    inner: Store<'o, T>,
}

enum Store<'o, T: Copy> {
    Slice {
        slots: &'o mut [MaybeUninit<T>],
        len: usize,
    },
    #[cfg(feature = "alloc")]
    Vec(alloc::vec::Vec<T>),
}

impl<'o, T: Copy> SegBuf<'o, T> {
    /// Storage in caller-owned slots; pushing past them is an error, never
    /// an allocation.
    ///
    /// ```
    /// # use core::mem::MaybeUninit;
    /// let mut slots = [MaybeUninit::<u8>::uninit(); 2];
    /// assert_eq!(dmaspace::vec::SegBuf::from_slice(&mut slots).capacity(), 2);
    /// ```
    pub fn from_slice(slots: &'o mut [MaybeUninit<T>]) -> Self {
        Self {
            inner: Store::Slice { slots, len: 0 },
        }
    }

    /// Growable storage with room for `n` elements before it allocates again.
    ///
    /// ```
    /// let b = dmaspace::vec::SegBuf::<u8>::with_capacity(4);
    /// assert!(b.capacity() >= 4);
    /// ```
    #[cfg(feature = "alloc")]
    #[must_use]
    pub fn with_capacity(n: usize) -> Self {
        Self {
            inner: Store::Vec(alloc::vec::Vec::with_capacity(n)),
        }
    }

    /// How many elements fit without allocating.
    ///
    /// ```
    /// assert_eq!(dmaspace::vec::SegBuf::<u8>::from_slice(&mut []).capacity(), 0);
    /// ```
    #[must_use]
    pub fn capacity(&self) -> usize {
        match &self.inner {
            Store::Slice { slots, .. } => slots.len(),
            #[cfg(feature = "alloc")]
            Store::Vec(v) => v.capacity(),
        }
    }

    pub(crate) fn clear(&mut self) {
        match &mut self.inner {
            Store::Slice { len, .. } => *len = 0,
            #[cfg(feature = "alloc")]
            Store::Vec(v) => v.clear(),
        }
    }

    #[inline]
    pub(crate) fn push(&mut self, value: T) -> Result<(), MapError> {
        match &mut self.inner {
            Store::Slice { slots, len } => {
                let capacity = slots.len();
                let slot = slots
                    .get_mut(*len)
                    .ok_or(MapError::OutOfCapacity { capacity })?;
                slot.write(value);
                *len += 1;
                Ok(())
            }
            #[cfg(feature = "alloc")]
            Store::Vec(v) => {
                v.try_reserve(1).map_err(|_| MapError::OutOfCapacity {
                    capacity: v.capacity(),
                })?;
                v.push(value);
                Ok(())
            }
        }
    }

    /// The caller-owned slots and the fill count, for a writer that keeps
    /// the count in a register; `None` for a growable store. The writer
    /// must have written `slots[..count]` before it stores `count`.
    #[inline]
    pub(crate) fn slots_mut(&mut self) -> Option<(&mut [MaybeUninit<T>], &mut usize)> {
        match &mut self.inner {
            Store::Slice { slots, len } => Some((slots, len)),
            #[cfg(feature = "alloc")]
            Store::Vec(_) => None,
        }
    }

    #[inline]
    pub(crate) fn last_mut(&mut self) -> Option<&mut T> {
        match &mut self.inner {
            Store::Slice { slots, len } => match len.checked_sub(1) {
                // SAFETY: slots[..len] were written by `push`.
                Some(i) => Some(unsafe { slots[i].assume_init_mut() }),
                None => None,
            },
            #[cfg(feature = "alloc")]
            Store::Vec(v) => v.last_mut(),
        }
    }

    /// The elements pushed so far.
    pub(crate) fn as_slice(&self) -> &[T] {
        match &self.inner {
            Store::Slice { slots, len } => {
                let init = &slots[..*len];
                // SAFETY: slots[..len] were written by `push`, and
                // MaybeUninit<T> has the layout of T.
                unsafe { core::slice::from_raw_parts(init.as_ptr().cast::<T>(), init.len()) }
            }
            #[cfg(feature = "alloc")]
            Store::Vec(v) => v,
        }
    }
}

/// How a [`DmaSeg`] reaches its memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// Through the device's IOMMU domain: the address is an IOVA. Host
    /// memory, and P2P memory reached through the host bridge.
    Iommu,
    /// No IOMMU: the address is the physical address (dma-direct).
    Direct,
    /// P2P through a PCIe switch: a bus address, the IOMMU bypassed.
    BusAddr,
}

/// One device-visible segment of a [`DmaVec`] for device `B`.
pub enum DmaSeg<B: Brand> {
    /// An address on the wire, usable by device `B`.
    Wire {
        /// What `B` puts in its descriptor.
        addr: DmaAddr<B>,
        /// Length in bytes.
        len: u64,
        /// Which kind of address `addr` is.
        via: Via,
    },
    /// An offset inside device `B`'s own BAR (P2P memory of the device
    /// itself, the seeds' case (c)): never on the wire, usable only by `B`.
    Local {
        /// BAR index.
        bar: u8,
        /// Offset in the BAR.
        offset: BarOffset,
        /// Length in bytes.
        len: u64,
    },
}

impl<B: Brand> DmaSeg<B> {
    /// Length in bytes.
    ///
    /// ```
    /// # use dmaspace::vec::{DmaSeg, Via};
    /// # dmaspace::brand!(D);
    /// // SAFETY: example value, never given to hardware.
    /// let s = DmaSeg::<D>::Wire { addr: unsafe { dmaspace::DmaAddr::new_unchecked(0) }, len: 9, via: Via::Direct };
    /// assert_eq!(s.len(), 9);
    /// ```
    #[must_use]
    pub fn len(&self) -> u64 {
        match *self {
            DmaSeg::Wire { len, .. } | DmaSeg::Local { len, .. } => len,
        }
    }

    /// Always false: mappers never produce empty segments.
    ///
    /// ```
    /// # use dmaspace::vec::{DmaSeg, Via};
    /// # dmaspace::brand!(D);
    /// // SAFETY: example value, never given to hardware.
    /// let s = DmaSeg::<D>::Wire { addr: unsafe { dmaspace::DmaAddr::new_unchecked(0) }, len: 9, via: Via::Direct };
    /// assert!(!s.is_empty());
    /// ```
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The wire address, or `None` for a device-local BAR offset.
    ///
    /// ```
    /// # use dmaspace::vec::DmaSeg;
    /// # dmaspace::brand!(D);
    /// // SAFETY: example value.
    /// let s = DmaSeg::<D>::Local { bar: 2, offset: unsafe { dmaspace::BarOffset::new_unchecked(0) }, len: 1 };
    /// assert!(s.wire_addr().is_none());
    /// ```
    #[must_use]
    pub fn wire_addr(&self) -> Option<DmaAddr<B>> {
        match *self {
            DmaSeg::Wire { addr, .. } => Some(addr),
            DmaSeg::Local { .. } => None,
        }
    }
}

impl<B: Brand> Clone for DmaSeg<B> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<B: Brand> Copy for DmaSeg<B> {}
impl<B: Brand> PartialEq for DmaSeg<B> {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (
                DmaSeg::Wire {
                    addr: a,
                    len: l,
                    via: v,
                },
                DmaSeg::Wire {
                    addr: b,
                    len: m,
                    via: w,
                },
            ) => a == b && l == m && v == w,
            (
                DmaSeg::Local {
                    bar: a,
                    offset: o,
                    len: l,
                },
                DmaSeg::Local {
                    bar: b,
                    offset: p,
                    len: m,
                },
            ) => a == b && o == p && l == m,
            _ => false,
        }
    }
}
impl<B: Brand> Eq for DmaSeg<B> {}
impl<B: Brand> fmt::Debug for DmaSeg<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DmaSeg::Wire { addr, len, via } => write!(f, "{addr:?} + {len:#x} via {via:?}"),
            DmaSeg::Local { bar, offset, len } => {
                write!(f, "{}:BAR{bar} {offset:?} + {len:#x}", B::NAME)
            }
        }
    }
}

mod sealed {
    pub trait Sealed {}
}

/// Whether a [`DmaVec`]'s IOVA range has been synced: [`Unsynced`] or [`Synced`].
pub trait SyncState: sealed::Sealed + 'static {}

/// Linked into the IOMMU but not yet synced: the device would fault.
#[derive(Debug)]
pub enum Unsynced {}
/// Synced: the device may use the addresses.
#[derive(Debug)]
pub enum Synced {}
impl sealed::Sealed for Unsynced {}
impl sealed::Sealed for Synced {}
impl SyncState for Unsynced {}
impl SyncState for Synced {}

/// Implemented only by [`Synced`]: what makes a [`DmaVec`]'s addresses
/// reach the device.
#[diagnostic::on_unimplemented(
    message = "the IOVA range of this mapping was linked but never synced",
    label = "the device would fault on these addresses",
    note = "call `.sync()` on the mapping first (the `dma_iova_sync` step)"
)]
pub trait DeviceVisible: SyncState {}
impl DeviceVisible for Synced {}

/// Segments mapped for device `B` in direction `D`, valid while `'a` (the
/// memory, the mapper and the output storage) lives. IOMMU-bound segments
/// share one contiguous IOVA range; dropping or [unmapping](Self::unmap)
/// the vector unlinks and frees it.
///
/// Only a synced vector gives out addresses, and only in the directions
/// `D` allows: [`device_reads`](Self::device_reads) for `ToDevice` and
/// `Bidirectional`, [`device_writes`](Self::device_writes) for
/// `FromDevice` and `Bidirectional`.
pub struct DmaVec<'a, B: Brand, D: Direction, S: SyncState = Synced> {
    segs: SegBuf<'a, DmaSeg<B>>,
    iova: Option<IovaLease<'a>>,
    _state: StateOf<'a, D, S>,
}

/// Direction and sync state, plus the borrow of everything mapped.
type StateOf<'a, D, S> = PhantomData<(&'a (), fn() -> (D, S))>;

impl<'a, B: Brand, D: Direction, S: SyncState> DmaVec<'a, B, D, S> {
    pub(crate) fn from_parts(segs: SegBuf<'a, DmaSeg<B>>, iova: Option<IovaLease<'a>>) -> Self {
        Self {
            segs,
            iova,
            _state: PhantomData,
        }
    }

    /// Number of device-visible segments.
    ///
    /// See the crate-level example.
    #[must_use]
    pub fn len(&self) -> usize {
        self.segs.as_slice().len()
    }

    /// Whether there are no segments.
    ///
    /// See the crate-level example.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Unmaps: unlinks and frees the IOVA range and ends the borrow of the
    /// memory. Dropping does the same; this names the moment.
    ///
    /// See the crate-level example.
    pub fn unmap(self) {}
}

impl<'a, B: Brand, D: Direction> DmaVec<'a, B, D, Unsynced> {
    /// Makes the IOVA range visible to the device (`dma_iova_sync`).
    ///
    /// See the crate-level example.
    #[must_use = "an unsynced mapping cannot reach the device"]
    pub fn sync(self) -> DmaVec<'a, B, D, Synced> {
        if let Some(lease) = &self.iova {
            lease.sync();
        }
        DmaVec::from_parts(self.segs, self.iova)
    }
}

impl<B: Brand, D: Direction, S: SyncState> DmaVec<'_, B, D, S> {
    /// The segments, for descriptors the device reads from (TX buffers,
    /// commands that write to a disk).
    ///
    /// See the crate-level example.
    #[must_use]
    pub fn device_reads(&self) -> &[DmaSeg<B>]
    where
        D: DeviceReads,
        S: DeviceVisible,
    {
        self.segs.as_slice()
    }

    /// The segments, for descriptors the device writes to (RX buffers,
    /// commands that read from a disk).
    ///
    /// See the crate-level example.
    #[must_use]
    pub fn device_writes(&self) -> &[DmaSeg<B>]
    where
        D: DeviceWrites,
        S: DeviceVisible,
    {
        self.segs.as_slice()
    }

    /// The first IOVA of the range, if any segment went through the IOMMU.
    ///
    /// See the crate-level example.
    #[must_use]
    pub fn iova_range_start(&self) -> Option<crate::Iova> {
        self.iova.as_ref().map(IovaLease::start)
    }
}

impl<B: Brand, D: Direction, S: SyncState> fmt::Debug for DmaVec<'_, B, D, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DmaVec")
            .field("device", &B::NAME)
            .field("direction", &D::NAME)
            .field("segments", &self.segs.as_slice())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slice_segbuf_push_last_and_capacity() {
        let mut slots = [MaybeUninit::<u64>::uninit(); 2];
        let mut b = SegBuf::from_slice(&mut slots);
        assert_eq!(b.as_slice(), &[] as &[u64]);
        b.push(1).unwrap();
        b.push(2).unwrap();
        *b.last_mut().unwrap() += 40;
        assert_eq!(b.as_slice(), &[1, 42]);
        assert_eq!(b.push(3), Err(MapError::OutOfCapacity { capacity: 2 }));
        b.clear();
        assert!(b.last_mut().is_none());
    }
}
