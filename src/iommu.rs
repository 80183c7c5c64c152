//! A software IOMMU domain: an IOVA allocator and a page table that
//! translates IOVAs back to physical addresses, with the permissions and
//! the link-then-sync discipline of `dma_iova_link()` / `dma_iova_sync()`.
//!
//! Userspace drivers use it to plan what they program into VFIO/iommufd;
//! emulators use it as the device's view of memory ([`IommuDomain::translate`]);
//! the tests use it to check every mapping end to end. It never allocates:
//! the caller provides the page table, one [`Pte`] per granule of aperture.

use core::cell::Cell;
use core::fmt;
use core::marker::PhantomData;

use bitflags::bitflags;

use crate::addr::{Iova, PAGE_SIZE, PhysAddr};
use crate::brand::{Brand, Claim};
use crate::error::{BrandInUse, IommuFault, MapError};

bitflags! {
    /// What a device may do through one IOMMU mapping.
    ///
    /// ```
    /// use dmaspace::iommu::IommuPerm;
    /// assert!((IommuPerm::READ | IommuPerm::WRITE).contains(IommuPerm::WRITE));
    /// ```
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub struct IommuPerm: u8 {
        /// The device may read (DMA to the device).
        const READ = 1;
        /// The device may write (DMA from the device).
        const WRITE = 2;
    }
}

/// The IOMMU granule: one page table entry maps this many bytes.
pub const GRANULE: u64 = PAGE_SIZE;

// Entry layout: physical granule base in bits 63..12, flags below.
const PTE_READ: u64 = 1 << 0;
const PTE_WRITE: u64 = 1 << 1;
const PTE_MMIO: u64 = 1 << 2;
const PTE_RESERVED: u64 = 1 << 3;
const PTE_LINKED: u64 = 1 << 4;
const PTE_PRESENT: u64 = 1 << 5;
const PTE_ADDR_MASK: u64 = !(GRANULE - 1);

/// One entry of a software IOMMU page table. Opaque; start from [`Pte::EMPTY`].
///
/// ```
/// use dmaspace::iommu::Pte;
/// let table = [Pte::EMPTY; 16];
/// # let _ = table;
/// ```
#[repr(transparent)]
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Pte(u64);

impl Pte {
    /// An entry that maps nothing.
    pub const EMPTY: Pte = Pte(0);

    /// A linked (not yet present) entry for the granule at `pa`.
    #[inline(always)]
    pub(crate) const fn linked(pa: u64, flags: u64) -> Pte {
        Pte((pa & PTE_ADDR_MASK) | flags | PTE_RESERVED | PTE_LINKED)
    }
}

impl fmt::Debug for Pte {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pte({:#x})", self.0)
    }
}

/// The page table and allocator, without the brand: what a live mapping
/// needs to unlink itself.
pub(crate) struct DomainCore<'t> {
    base: Iova,
    // A shared slice of cells: covariant in 't, so a lease can shorten it.
    table: &'t [Cell<Pte>],
    /// Next-fit start: allocation resumes where the last one ended.
    rover: Cell<usize>,
}

impl DomainCore<'_> {
    fn index_of(&self, iova: Iova) -> Option<usize> {
        let off = iova.checked_offset_from(self.base)?;
        let idx = usize::try_from(off / GRANULE).ok()?;
        (idx < self.table.len()).then_some(idx)
    }

    /// Reserves `count` consecutive free granules, next-fit.
    #[inline]
    pub(crate) fn reserve(&self, count: usize) -> Option<IovaLease<'_>> {
        let table = self.table;
        let n = table.len();
        if count == 0 || count > n {
            return None;
        }
        let mut start = self.rover.get() % n;
        let mut scanned = 0;
        while scanned < n {
            if start + count > n {
                // Wrap to the bottom; the skipped tail counts as scanned.
                scanned += n - start;
                start = 0;
                continue;
            }
            match table[start..start + count]
                .iter()
                .rposition(|e| e.get().0 != 0)
            {
                None => {
                    for e in &table[start..start + count] {
                        e.set(Pte(PTE_RESERVED));
                    }
                    self.rover.set(start + count);
                    return Some(IovaLease {
                        core: self,
                        first: start,
                        count,
                    });
                }
                Some(busy) => {
                    scanned += busy + 1;
                    start += busy + 1;
                }
            }
        }
        None
    }
}

/// A reserved run of granules; dropping it unlinks and frees them.
pub(crate) struct IovaLease<'d> {
    core: &'d DomainCore<'d>,
    first: usize,
    count: usize,
}

impl IovaLease<'_> {
    #[inline]
    pub(crate) fn start(&self) -> Iova {
        self.core.base + self.first as u64 * GRANULE
    }

    /// The lease's entries, one per granule.
    #[inline]
    pub(crate) fn entries(&self) -> &[Cell<Pte>] {
        &self.core.table[self.first..self.first + self.count]
    }

    /// Writes entries mapping `[phys_granule, +n granules)` at granule `at`
    /// of the lease. The caller checked bounds and alignment.
    #[inline]
    pub(crate) fn write(&self, at: usize, phys_granule: PhysAddr, n: usize, flags: u64) {
        let entries = &self.core.table[self.first + at..self.first + at + n];
        let mut pa = phys_granule.as_u64();
        for e in entries {
            e.set(Pte::linked(pa, flags));
            pa = pa.wrapping_add(GRANULE);
        }
    }

    /// Makes every linked entry visible to the device (the IOTLB flush of
    /// `dma_iova_sync`).
    #[inline]
    pub(crate) fn sync(&self) {
        for e in &self.core.table[self.first..self.first + self.count] {
            let v = e.get().0;
            if v & PTE_LINKED != 0 {
                e.set(Pte(v | PTE_PRESENT));
            }
        }
    }
}

impl Drop for IovaLease<'_> {
    #[inline]
    fn drop(&mut self) {
        for e in &self.core.table[self.first..self.first + self.count] {
            e.set(Pte::EMPTY);
        }
    }
}

#[inline]
pub(crate) fn perm_bits(perm: IommuPerm, mmio: bool) -> u64 {
    let mut bits = 0;
    if perm.contains(IommuPerm::READ) {
        bits |= PTE_READ;
    }
    if perm.contains(IommuPerm::WRITE) {
        bits |= PTE_WRITE;
    }
    if mmio {
        bits |= PTE_MMIO;
    }
    bits
}

/// A software IOMMU domain named by brand `Dm`: the IOVA space of the
/// devices attached to it.
///
/// ```
/// use dmaspace::iommu::{IommuDomain, IommuPerm, Pte};
/// use dmaspace::{Iova, PhysAddr};
/// dmaspace::brand!(Dom);
/// let mut table = [Pte::EMPTY; 64];
/// // SAFETY: the aperture is this example's own; no hardware uses it.
/// let dom = IommuDomain::<Dom>::new(unsafe { Iova::new_unchecked(0x1000_0000) }, &mut table)?;
/// let mut range = dom.alloc(8192)?;
/// let iova = dom.link(&mut range, PhysAddr::new(0x7000), 8192, IommuPerm::READ)?;
/// assert!(dom.translate(iova, IommuPerm::READ).is_err()); // linked, not yet synced
/// dom.sync(&mut range);
/// assert_eq!(dom.translate(iova + 4100, IommuPerm::READ)?, PhysAddr::new(0x8004));
/// assert!(dom.translate(iova, IommuPerm::WRITE).is_err()); // read-only mapping
/// drop(range);                                              // unlinks and frees
/// assert!(dom.translate(iova, IommuPerm::READ).is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct IommuDomain<'t, Dm: Brand> {
    core: DomainCore<'t>,
    _claim: Claim<Dm>,
}

impl<'t, Dm: Brand> IommuDomain<'t, Dm> {
    /// A domain whose aperture starts at `base` and covers one granule per
    /// entry of `table`. Claims brand `Dm`.
    ///
    /// # Errors
    /// [`BrandInUse`] if another live object holds `Dm`.
    ///
    /// # Panics
    /// If `base` is not granule-aligned or the aperture passes the top of
    /// the address space (both are constants of the caller's setup).
    ///
    /// ```
    /// # use dmaspace::iommu::{IommuDomain, Pte};
    /// dmaspace::brand!(D);
    /// let mut t = vec![Pte::EMPTY; 1 << 10];
    /// // SAFETY: an aperture this example owns.
    /// let d = IommuDomain::<D>::new(unsafe { dmaspace::Iova::new_unchecked(0) }, &mut t)?;
    /// assert_eq!(d.aperture_len(), 4 << 20);
    /// # Ok::<(), dmaspace::error::BrandInUse>(())
    /// ```
    pub fn new(base: Iova, table: &'t mut [Pte]) -> Result<Self, BrandInUse> {
        assert!(
            base.is_aligned(GRANULE),
            "IOMMU aperture base {base:?} is not granule-aligned"
        );
        assert!(
            base.checked_add(table.len() as u64 * GRANULE).is_some(),
            "IOMMU aperture passes the top of the address space"
        );
        let claim = Claim::acquire()?;
        table.fill(Pte::EMPTY);
        Ok(Self {
            core: DomainCore {
                base,
                table: Cell::from_mut(table).as_slice_of_cells(),
                rover: Cell::new(0),
            },
            _claim: claim,
        })
    }

    /// Bytes of IOVA space the domain covers.
    ///
    /// ```
    /// # use dmaspace::iommu::{IommuDomain, Pte};
    /// # dmaspace::brand!(D);
    /// # let mut t = [Pte::EMPTY; 2];
    /// # // SAFETY: doc example aperture.
    /// # let d = IommuDomain::<D>::new(unsafe { dmaspace::Iova::new_unchecked(0) }, &mut t)?;
    /// assert_eq!(d.aperture_len(), 8192);
    /// # Ok::<(), dmaspace::error::BrandInUse>(())
    /// ```
    #[must_use]
    pub fn aperture_len(&self) -> u64 {
        self.core.table.len() as u64 * GRANULE
    }

    pub(crate) fn core(&self) -> &DomainCore<'t> {
        &self.core
    }

    /// Reserves a contiguous IOVA range of at least `len` bytes
    /// (`dma_iova_try_alloc`). Dropping the range unlinks and frees it.
    ///
    /// # Errors
    /// [`MapError::IovaExhausted`] if no free run is large enough.
    ///
    /// ```
    /// # use dmaspace::iommu::{IommuDomain, Pte};
    /// # dmaspace::brand!(D);
    /// # let mut t = [Pte::EMPTY; 4];
    /// # // SAFETY: doc example aperture.
    /// # let d = IommuDomain::<D>::new(unsafe { dmaspace::Iova::new_unchecked(0) }, &mut t)?;
    /// let r = d.alloc(3 * 4096)?;
    /// assert!(d.alloc(2 * 4096).is_err());
    /// drop(r);
    /// assert!(d.alloc(4 * 4096).is_ok());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn alloc(&self, len: u64) -> Result<IovaRange<'_, Dm>, MapError> {
        let count = len.div_ceil(GRANULE);
        let lease = usize::try_from(count)
            .ok()
            .and_then(|c| self.core.reserve(c))
            .ok_or(MapError::IovaExhausted { len })?;
        Ok(IovaRange {
            lease,
            cursor: 0,
            links: 0,
            open_end: false,
            _dm: PhantomData,
        })
    }

    /// Links `[phys, phys + len)` at the range's cursor (`dma_iova_link`)
    /// and returns the IOVA of `phys`. Only the first link may start inside
    /// a granule; a link that ends inside a granule must be the last.
    ///
    /// # Errors
    /// [`MapError::Unaligned`] against the rule above,
    /// [`MapError::IovaExhausted`] past the end of the range,
    /// [`MapError::EmptySegment`] for `len == 0`,
    /// [`MapError::Overflow`] if the physical range wraps.
    ///
    /// ```
    /// # use dmaspace::iommu::{IommuDomain, IommuPerm, Pte};
    /// # use dmaspace::PhysAddr;
    /// # dmaspace::brand!(D);
    /// # let mut t = [Pte::EMPTY; 4];
    /// # // SAFETY: doc example aperture.
    /// # let d = IommuDomain::<D>::new(unsafe { dmaspace::Iova::new_unchecked(0) }, &mut t)?;
    /// let mut r = d.alloc(3 * 4096)?;
    /// let a = d.link(&mut r, PhysAddr::new(0x1200), 0xe00, IommuPerm::READ)?; // unaligned start: fine
    /// assert_eq!(a.as_u64() % 4096, 0x200);
    /// d.link(&mut r, PhysAddr::new(0x9000), 0x800, IommuPerm::READ)?;          // ends mid-granule
    /// assert!(d.link(&mut r, PhysAddr::new(0xa000), 0x1000, IommuPerm::READ).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn link(
        &self,
        range: &mut IovaRange<'_, Dm>,
        phys: PhysAddr,
        len: u64,
        perm: IommuPerm,
    ) -> Result<Iova, MapError> {
        range.link(phys, len, perm_bits(perm, false))
    }

    /// Makes every link of `range` visible to devices (`dma_iova_sync`).
    /// Before this, the device faults on the range.
    ///
    /// ```
    /// # use dmaspace::iommu::{IommuDomain, IommuPerm, Pte};
    /// # use dmaspace::PhysAddr;
    /// # dmaspace::brand!(D);
    /// # let mut t = [Pte::EMPTY; 4];
    /// # // SAFETY: doc example aperture.
    /// # let d = IommuDomain::<D>::new(unsafe { dmaspace::Iova::new_unchecked(0) }, &mut t)?;
    /// let mut r = d.alloc(4096)?;
    /// let a = d.link(&mut r, PhysAddr::new(0x1000), 4096, IommuPerm::WRITE)?;
    /// d.sync(&mut r);
    /// assert_eq!(d.translate(a, IommuPerm::WRITE)?, PhysAddr::new(0x1000));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn sync(&self, range: &mut IovaRange<'_, Dm>) {
        range.lease.sync();
    }

    /// What a device attached to this domain reaches at `iova` for an
    /// access `wanted`: the physical address, or the fault a hardware IOMMU
    /// would raise.
    ///
    /// # Errors
    /// [`IommuFault::NotPresent`] if nothing synced is mapped there,
    /// [`IommuFault::Denied`] if the mapping forbids the access.
    ///
    /// ```
    /// # use dmaspace::iommu::{IommuDomain, IommuPerm, Pte};
    /// # dmaspace::brand!(D);
    /// # let mut t = [Pte::EMPTY; 4];
    /// # // SAFETY: doc example aperture.
    /// # let d = IommuDomain::<D>::new(unsafe { dmaspace::Iova::new_unchecked(0) }, &mut t)?;
    /// // SAFETY: only translated, never given to hardware.
    /// assert!(d.translate(unsafe { dmaspace::Iova::new_unchecked(0) }, IommuPerm::READ).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn translate(&self, iova: Iova, wanted: IommuPerm) -> Result<PhysAddr, IommuFault> {
        let idx = self
            .core
            .index_of(iova)
            .ok_or(IommuFault::NotPresent { iova })?;
        let e = self.core.table[idx].get().0;
        if e & PTE_PRESENT == 0 {
            return Err(IommuFault::NotPresent { iova });
        }
        let mut allowed = IommuPerm::empty();
        allowed.set(IommuPerm::READ, e & PTE_READ != 0);
        allowed.set(IommuPerm::WRITE, e & PTE_WRITE != 0);
        if !allowed.contains(wanted) {
            return Err(IommuFault::Denied {
                iova,
                wanted,
                allowed,
            });
        }
        Ok(PhysAddr::new((e & PTE_ADDR_MASK) | iova.offset_in(GRANULE)))
    }

    /// Whether the entry that maps `iova` is marked MMIO (P2P memory reached
    /// through the host bridge: never cache-synced, never bounced).
    ///
    /// ```
    /// # use dmaspace::iommu::{IommuDomain, Pte};
    /// # dmaspace::brand!(D);
    /// # let mut t = [Pte::EMPTY; 1];
    /// # // SAFETY: doc example aperture.
    /// # let d = IommuDomain::<D>::new(unsafe { dmaspace::Iova::new_unchecked(0) }, &mut t)?;
    /// // SAFETY: only inspected.
    /// assert!(!d.is_mmio(unsafe { dmaspace::Iova::new_unchecked(0) }));
    /// # Ok::<(), dmaspace::error::BrandInUse>(())
    /// ```
    #[must_use]
    pub fn is_mmio(&self, iova: Iova) -> bool {
        self.core
            .index_of(iova)
            .is_some_and(|i| self.core.table[i].get().0 & PTE_MMIO != 0)
    }

    /// Number of granules currently reserved (for leak checks).
    ///
    /// ```
    /// # use dmaspace::iommu::{IommuDomain, Pte};
    /// # dmaspace::brand!(D);
    /// # let mut t = [Pte::EMPTY; 4];
    /// # // SAFETY: doc example aperture.
    /// # let d = IommuDomain::<D>::new(unsafe { dmaspace::Iova::new_unchecked(0) }, &mut t)?;
    /// let r = d.alloc(4096)?;
    /// assert_eq!(d.reserved_granules(), 1);
    /// drop(r);
    /// assert_eq!(d.reserved_granules(), 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn reserved_granules(&self) -> usize {
        self.core.table.iter().filter(|e| e.get().0 != 0).count()
    }
}

impl<Dm: Brand> fmt::Debug for IommuDomain<'_, Dm> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IommuDomain")
            .field("brand", &Dm::NAME)
            .field("base", &self.core.base)
            .field("aperture_len", &self.aperture_len())
            .finish()
    }
}

/// A contiguous IOVA range of domain `Dm`, being filled by links
/// (`struct dma_iova_state`). Only the domain that allocated it accepts it.
/// Dropping it unlinks and frees the whole range.
pub struct IovaRange<'d, Dm: Brand> {
    pub(crate) lease: IovaLease<'d>,
    /// Bytes linked so far, counted from the range's first granule.
    pub(crate) cursor: u64,
    pub(crate) links: usize,
    /// The last link ended inside a granule: nothing may follow it.
    pub(crate) open_end: bool,
    _dm: PhantomData<fn() -> Dm>,
}

impl<Dm: Brand> IovaRange<'_, Dm> {
    /// First IOVA of the range (granule-aligned).
    ///
    /// ```
    /// # use dmaspace::iommu::{IommuDomain, Pte};
    /// # dmaspace::brand!(D);
    /// # let mut t = [Pte::EMPTY; 4];
    /// # // SAFETY: doc example aperture.
    /// # let d = IommuDomain::<D>::new(unsafe { dmaspace::Iova::new_unchecked(0x10000) }, &mut t)?;
    /// assert_eq!(d.alloc(1)?.start().as_u64(), 0x10000);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn start(&self) -> Iova {
        self.lease.start()
    }

    /// Length of the range in bytes.
    ///
    /// ```
    /// # use dmaspace::iommu::{IommuDomain, Pte};
    /// # dmaspace::brand!(D);
    /// # let mut t = [Pte::EMPTY; 4];
    /// # // SAFETY: doc example aperture.
    /// # let d = IommuDomain::<D>::new(unsafe { dmaspace::Iova::new_unchecked(0) }, &mut t)?;
    /// assert_eq!(d.alloc(5000)?.len(), 8192);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn len(&self) -> u64 {
        self.lease.count as u64 * GRANULE
    }

    /// Always false: a range has at least one granule.
    ///
    /// ```
    /// # use dmaspace::iommu::{IommuDomain, Pte};
    /// # dmaspace::brand!(D);
    /// # let mut t = [Pte::EMPTY; 4];
    /// # // SAFETY: doc example aperture.
    /// # let d = IommuDomain::<D>::new(unsafe { dmaspace::Iova::new_unchecked(0) }, &mut t)?;
    /// assert!(!d.alloc(1)?.is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.lease.count == 0
    }

    /// The shared link step; `flags` are PTE permission/attribute bits.
    pub(crate) fn link(&mut self, phys: PhysAddr, len: u64, flags: u64) -> Result<Iova, MapError> {
        let index = self.links;
        if len == 0 {
            return Err(MapError::EmptySegment { index });
        }
        let last = phys.checked_add(len - 1).ok_or(MapError::Overflow {
            start: phys.as_u64(),
            len,
        })?;
        let lead = phys.offset_in(GRANULE);
        if self.open_end || (self.links > 0 && lead != 0) {
            return Err(MapError::Unaligned {
                index,
                granule: GRANULE,
            });
        }
        // The first link keeps the physical offset inside its granule.
        let at = if self.links == 0 { lead } else { self.cursor };
        let end = at.checked_add(len).ok_or(MapError::Overflow {
            start: phys.as_u64(),
            len,
        })?;
        if end > self.len() {
            return Err(MapError::IovaExhausted { len });
        }
        let first_granule = (at / GRANULE) as usize;
        let granules = (last.align_down(GRANULE) - phys.align_down(GRANULE)) / GRANULE + 1;
        self.lease.write(
            first_granule,
            phys.align_down(GRANULE),
            granules as usize,
            flags,
        );
        self.cursor = end;
        self.links += 1;
        self.open_end = end % GRANULE != 0;
        Ok(self.lease.start() + at)
    }
}

impl<Dm: Brand> fmt::Debug for IovaRange<'_, Dm> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IovaRange")
            .field("domain", &Dm::NAME)
            .field("start", &self.start())
            .field("len", &self.len())
            .field("linked", &self.cursor)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    crate::brand!(TDom);
    crate::brand!(TDom2);

    fn iova(v: u64) -> Iova {
        // SAFETY: test apertures only.
        unsafe { Iova::new_unchecked(v) }
    }

    #[test]
    fn allocator_never_overlaps_and_reuses_freed() {
        let mut t = [Pte::EMPTY; 16];
        let d = IommuDomain::<TDom>::new(iova(0x10_0000), &mut t).unwrap();
        let a = d.alloc(4 * GRANULE).unwrap();
        let b = d.alloc(8 * GRANULE).unwrap();
        let c = d.alloc(4 * GRANULE).unwrap();
        let spans = [
            (a.start(), a.len()),
            (b.start(), b.len()),
            (c.start(), c.len()),
        ];
        for (i, x) in spans.iter().enumerate() {
            for y in &spans[i + 1..] {
                assert!(x.0 + x.1 <= y.0 || y.0 + y.1 <= x.0, "{x:?} overlaps {y:?}");
            }
        }
        assert_eq!(
            d.alloc(GRANULE).unwrap_err(),
            MapError::IovaExhausted { len: GRANULE }
        );
        let b_start = b.start();
        drop(b);
        let b2 = d.alloc(8 * GRANULE).expect("freed range is reused");
        assert_eq!(b2.start(), b_start);
        drop((a, c, b2));
        assert_eq!(d.reserved_granules(), 0);
    }

    #[test]
    fn link_rules_and_translation() {
        let mut t = [Pte::EMPTY; 8];
        let d = IommuDomain::<TDom2>::new(iova(0), &mut t).unwrap();
        let mut r = d.alloc(3 * GRANULE).unwrap();
        let a = d
            .link(&mut r, PhysAddr::new(0x5f00), 0x100, IommuPerm::READ)
            .unwrap();
        assert_eq!(a.as_u64(), 0xf00);
        let b = d
            .link(&mut r, PhysAddr::new(0x9000), 0x2000, IommuPerm::READ)
            .unwrap();
        assert_eq!(b.as_u64(), 0x1000);
        // Full: the range has no room for another granule.
        assert!(matches!(
            d.link(&mut r, PhysAddr::new(0xb000), 0x1000, IommuPerm::READ),
            Err(MapError::IovaExhausted { .. })
        ));
        assert_eq!(
            d.translate(a, IommuPerm::READ),
            Err(IommuFault::NotPresent { iova: a })
        );
        d.sync(&mut r);
        assert_eq!(d.translate(a, IommuPerm::READ), Ok(PhysAddr::new(0x5f00)));
        assert_eq!(
            d.translate(b + 0x1abc, IommuPerm::READ),
            Ok(PhysAddr::new(0xaabc))
        );
        assert!(matches!(
            d.translate(b, IommuPerm::WRITE),
            Err(IommuFault::Denied { .. })
        ));
        drop(r);
        assert_eq!(d.reserved_granules(), 0);
    }

    #[test]
    fn interior_links_must_be_aligned() {
        crate::brand!(TDom3);
        let mut t = [Pte::EMPTY; 8];
        let d = IommuDomain::<TDom3>::new(iova(0), &mut t).unwrap();
        let mut r = d.alloc(4 * GRANULE).unwrap();
        d.link(&mut r, PhysAddr::new(0x1000), 0x1000, IommuPerm::READ)
            .unwrap();
        assert_eq!(
            d.link(&mut r, PhysAddr::new(0x2100), 0x100, IommuPerm::READ),
            Err(MapError::Unaligned {
                index: 1,
                granule: GRANULE
            })
        );
        d.link(&mut r, PhysAddr::new(0x3000), 0x800, IommuPerm::READ)
            .unwrap();
        assert_eq!(
            d.link(&mut r, PhysAddr::new(0x4000), 0x1000, IommuPerm::READ),
            Err(MapError::Unaligned {
                index: 2,
                granule: GRANULE
            })
        );
    }
}
