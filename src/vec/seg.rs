//! Segments of memory handed to the device side: host RAM or P2P memory.
//!
//! They describe memory from the CPU's side (physical addresses); only a
//! mapper turns them into addresses a device may use.

use core::fmt;
use core::marker::PhantomData;

use crate::addr::PhysAddr;
use crate::brand::{Brand, Invariant};
use crate::id::ProviderId;

/// Bit of [`HostSeg`]'s length word: the segment's IOMMU granules, counted
/// in physical addresses, lie inside its buffer. Lengths come from buffers
/// shorter than 2^61 bytes (checked where they are made), so bits 61-63 are
/// free.
const COVERS: u64 = 1 << 63;
/// Bit of the length word: the same, counted in process virtual addresses
/// (what a VFIO or iommufd backend maps).
const COVERS_VIRT: u64 = 1 << 62;
/// Bit of the length word: the physical address is unknown
/// ([`HostPages::from_virt`](crate::host::HostPages::from_virt)).
const NO_PHYS: u64 = 1 << 61;
/// The flag bits of the length word.
const FLAGS: u64 = COVERS | COVERS_VIRT | NO_PHYS;

/// A physically contiguous range of host RAM handed to the device side.
/// Made by [`crate::host::HostPages::dma`]; while it (or a mapping of it)
/// lives, the CPU cannot touch the bytes.
///
/// Neither `Copy` nor `Clone`, and mappers take requests by `&mut`: one
/// segment is in at most one request, and one request in at most one live
/// mapping (dma-debug's "overlapping mappings", ruled out at compile time).
pub struct HostSeg<'m> {
    phys: PhysAddr,
    /// Where the process sees the first byte (what VFIO and iommufd map).
    vaddr: usize,
    /// Length, and [`COVERS`].
    len: u64,
    _mem: PhantomData<&'m mut [u8]>,
}

impl HostSeg<'_> {
    /// `phys`: the physical address, `None` if unknown. `covers` /
    /// `covers_virt`: every IOMMU granule the range touches, in physical /
    /// virtual addresses, lies inside the buffer it was cut from.
    pub(crate) fn new(
        phys: Option<PhysAddr>,
        vaddr: usize,
        len: u64,
        covers: bool,
        covers_virt: bool,
    ) -> Self {
        debug_assert!(len & FLAGS == 0, "buffer lengths stay below 2^61");
        let flag = |on: bool, bit: u64| if on { bit } else { 0 };
        Self {
            phys: phys.unwrap_or(PhysAddr::new(0)),
            vaddr,
            len: len
                | flag(covers && phys.is_some(), COVERS)
                | flag(covers_virt, COVERS_VIRT)
                | flag(phys.is_none(), NO_PHYS),
            _mem: PhantomData,
        }
    }

    /// The process virtual address of the first byte: what a VFIO or
    /// iommufd backend maps (as a number; the bytes stay the buffer's).
    #[inline(always)]
    #[must_use]
    pub fn vaddr(&self) -> usize {
        self.vaddr
    }

    /// Physical address of the first byte; `None` for memory described by
    /// its virtual address only
    /// ([`HostPages::from_virt`](crate::host::HostPages::from_virt)), which
    /// mappers that need the physical address refuse
    /// ([`MapError::NoPhysAddr`](crate::error::MapError::NoPhysAddr)).
    ///
    /// ```
    /// # let mut b = [0u8; 8];
    /// # // SAFETY: doc example, never mapped for hardware.
    /// # let mut p = unsafe { dmaspace::host::HostPages::new(&mut b, dmaspace::PhysAddr::new(0x3000)) }?;
    /// assert_eq!(p.dma().phys(), Some(dmaspace::PhysAddr::new(0x3000)));
    /// # // SAFETY: doc example, never mapped for hardware.
    /// # let mut v = unsafe { dmaspace::host::HostPages::from_virt(&mut b) }?;
    /// assert_eq!(v.dma().phys(), None);
    /// # Ok::<(), dmaspace::error::MapError>(())
    /// ```
    #[inline(always)]
    #[must_use]
    pub fn phys(&self) -> Option<PhysAddr> {
        if self.len & NO_PHYS == 0 {
            Some(self.phys)
        } else {
            None
        }
    }

    /// The physical address as stored (meaningless when unknown): for the
    /// mapper's passes, which check [`phys`](Self::phys)'s `None` first.
    #[inline(always)]
    pub(crate) fn phys_raw(&self) -> PhysAddr {
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
    #[inline(always)]
    #[must_use]
    pub fn len(&self) -> u64 {
        self.len & !FLAGS
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
        self.len() == 0
    }

    /// Whether every IOMMU granule the segment touches belongs to the buffer
    /// it was cut from (so an IOMMU may map those granules whole), counted
    /// in physical addresses (false when the physical address is unknown).
    ///
    /// ```
    /// # let mut b = [0u8; 8];
    /// # // SAFETY: doc example, never mapped for hardware.
    /// # let mut p = unsafe { dmaspace::host::HostPages::new(&mut b, dmaspace::PhysAddr::new(0x3000)) }?;
    /// assert!(!p.dma().covers_granules()); // 8 bytes of a 4 KiB granule
    /// # Ok::<(), dmaspace::error::MapError>(())
    /// ```
    #[inline(always)]
    #[must_use]
    pub fn covers_granules(&self) -> bool {
        self.len & COVERS != 0
    }

    /// [`covers_granules`](Self::covers_granules) counted in process
    /// virtual addresses: what a backend that maps virtual addresses needs.
    #[inline(always)]
    pub(crate) fn covers_granules_virt(&self) -> bool {
        self.len & COVERS_VIRT != 0
    }
}

impl fmt::Debug for HostSeg<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.phys().is_some() {
            write!(f, "HostSeg({:?} + {:#x})", self.phys, self.len())
        } else {
            write!(f, "HostSeg(vaddr {:#x} + {:#x})", self.vaddr, self.len())
        }
    }
}

/// A range of P2P memory of a provider of brand `PB` (a BAR of a PCI
/// device). The CPU never touches it; only a route ([`crate::route`]) turns
/// it into something a device can use. It remembers which provider it came
/// from, so a route of another provider of the same brand is refused.
pub struct P2pSeg<'m, PB: Brand> {
    phys: PhysAddr,
    len: u64,
    provider: ProviderId,
    /// The IOMMU granules it touches lie inside its allocation.
    covers: bool,
    _mem: SharedOf<'m, PB>,
}

/// A shared borrow of provider `PB`'s memory.
type SharedOf<'m, PB> = PhantomData<(&'m (), Invariant<PB>)>;

impl<PB: Brand> P2pSeg<'_, PB> {
    /// `covers`: every IOMMU granule the range touches lies inside the
    /// allocation it was cut from.
    pub(crate) fn new(phys: PhysAddr, len: u64, provider: ProviderId, covers: bool) -> Self {
        Self {
            phys,
            len,
            provider,
            covers,
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
    #[inline(always)]
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
    #[inline(always)]
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

    /// Whether every IOMMU granule the segment touches belongs to the
    /// allocation it was cut from (so an IOMMU may map those granules
    /// whole). A sub-page allocation shares its page with other
    /// allocations: mapped through the IOMMU it is refused
    /// ([`MapError::PartialGranule`](crate::error::MapError::PartialGranule)).
    ///
    /// ```
    /// # use dmaspace::provider::Provider;
    /// # use dmaspace::{pci::Bdf, BusAddr, PhysAddr};
    /// # dmaspace::brand!(P);
    /// # // SAFETY: example values.
    /// # let p = unsafe { Provider::<P>::new(Bdf::new(0, 5, 0, 0), 0, PhysAddr::new(0x10_0000), BusAddr::new_unchecked(0x10_0000), 1 << 20)? };
    /// assert!(!p.alloc(512)?.seg().covers_granules());
    /// let page = p.alloc(4096)?;
    /// assert!(page.seg().covers_granules());
    /// assert!(page.seg_range(512, 512)?.covers_granules()); // its page is the allocation's
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline(always)]
    #[must_use]
    pub fn covers_granules(&self) -> bool {
        self.covers
    }

    #[inline(always)]
    pub(crate) fn provider(&self) -> ProviderId {
        self.provider
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

/// One segment of a [`BvecP2p`](crate::vec::BvecP2p): host memory, or memory of
/// provider `PB`.
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
