//! A software IOMMU domain: an IOVA allocator and a page table that
//! translates IOVAs back to physical addresses, with the permissions and
//! the link-then-sync discipline of `dma_iova_link()` / `dma_iova_sync()`.
//!
//! Userspace drivers use it to plan what they program into VFIO/iommufd;
//! emulators use it as the device's view of memory ([`IommuDomain::translate`]);
//! the tests use it to check every mapping end to end. It never allocates:
//! the caller provides the page table, one [`Pte`] per granule of aperture.
//!
//! Mappers link through it; the raw range API ([`IommuDomain::alloc`],
//! [`IovaRange::link`]) is `unsafe` to link, because it takes any physical
//! address and would otherwise let safe code grant a device any page.

#[cfg(feature = "alloc")]
pub mod iova_alloc;
#[cfg(feature = "alloc")]
pub(crate) mod page_table;

use core::cell::Cell;
use core::fmt;
use core::marker::PhantomData;

use crate::addr::{Iova, PAGE_SIZE, PhysAddr};
use crate::brand::Brand;
pub use crate::dir::IommuPerm;
use crate::error::{IommuFault, MapError};

/// The IOMMU granule: one page table entry maps this many bytes.
pub const GRANULE: u64 = PAGE_SIZE;

// Entry layout: physical granule base in bits 63..12; the `IommuPerm` bits
// as they are (the one form of permissions); then the entry's state.
const PTE_PERM: u64 = IommuPerm::all().bits() as u64;
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
}

impl fmt::Debug for Pte {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pte({:#x})", self.0)
    }
}

/// The entry bits for a mapping with `perm`, MMIO (P2P memory through the
/// host bridge) or not.
#[inline(always)]
pub(crate) const fn link_flags(perm: IommuPerm, mmio: bool) -> u64 {
    let mmio = if mmio { PTE_MMIO } else { 0 };
    perm.bits() as u64 | mmio
}

/// The page table and allocator, without the brand: what a live mapping
/// needs to unlink itself.
pub(crate) struct DomainCore<'t> {
    base: u64,
    // A shared slice of cells: covariant in 't, so a lease can shorten it.
    table: &'t [Cell<Pte>],
    /// Next-fit start: allocation resumes where the last one ended.
    rover: Cell<usize>,
}

impl DomainCore<'_> {
    fn index_of(&self, addr: u64) -> Option<usize> {
        let off = addr.checked_sub(self.base)?;
        let idx = usize::try_from(off / GRANULE).ok()?;
        (idx < self.table.len()).then_some(idx)
    }

    /// Granules from the base whose last byte is at most `mask`.
    fn granules_below(&self, mask: u64) -> usize {
        if mask < self.base {
            return 0;
        }
        let below = (u128::from(mask - self.base) + 1) / u128::from(GRANULE);
        usize::try_from(below).map_or(self.table.len(), |b| b.min(self.table.len()))
    }

    /// Reserves `count` consecutive free granules whose IOVAs are at most
    /// `mask`, next-fit.
    #[inline]
    pub(crate) fn reserve(&self, count: usize, mask: u64) -> Option<IovaLease<'_>> {
        let table = self.table;
        let n = self.granules_below(mask);
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
    /// First IOVA of the run (inside the aperture, checked when the domain
    /// was made).
    #[inline(always)]
    pub(crate) fn start(&self) -> u64 {
        self.core.base + self.first as u64 * GRANULE
    }

    #[inline(always)]
    fn len(&self) -> u64 {
        self.count as u64 * GRANULE
    }

    /// The lease's entries, one per granule.
    #[inline(always)]
    pub(crate) fn entries(&self) -> &[Cell<Pte>] {
        &self.core.table[self.first..self.first + self.count]
    }

    /// Makes every linked entry visible to the device (the IOTLB flush of
    /// `dma_iova_sync`).
    #[inline]
    pub(crate) fn sync(&self) {
        for e in self.entries() {
            let v = e.get().0;
            if v & PTE_LINKED != 0 {
                e.set(Pte(v | PTE_PRESENT));
            }
        }
    }
}

impl IovaLease<'_> {
    /// Takes every entry out of the device's reach now, keeping the run
    /// reserved until the lease is dropped (an early unmap).
    #[inline]
    pub(crate) fn unlink(&self) {
        for e in self.entries() {
            e.set(Pte(PTE_RESERVED));
        }
    }
}

impl Drop for IovaLease<'_> {
    #[inline]
    fn drop(&mut self) {
        for e in self.entries() {
            e.set(Pte::EMPTY);
        }
    }
}

/// Links `entries.len()` granules from `phys_granule` up: the one place
/// entries are filled.
#[inline(always)]
pub(crate) fn fill(entries: &[Cell<Pte>], phys_granule: u64, flags: u64) {
    let mut pa = phys_granule;
    for e in entries {
        e.set(Pte((pa & PTE_ADDR_MASK)
            | flags
            | PTE_RESERVED
            | PTE_LINKED));
        pa = pa.wrapping_add(GRANULE);
    }
}

/// The `dma_iova_link` rule, once: where each link of a run goes. Only the
/// first link may start inside a granule (it keeps its offset), and a link
/// that ends inside one must be the last.
#[derive(Clone, Copy, Default)]
pub(crate) struct LinkCursor {
    /// Bytes of the run so far, counted from its first granule; zero until
    /// the first link (links are never empty).
    end: u64,
}

/// Where one link lands in its run.
#[derive(Clone, Copy)]
pub(crate) struct Placed {
    /// Byte offset of the link's first byte from the run's first granule.
    pub(crate) at: u64,
    /// Index of the first granule it touches.
    pub(crate) first_granule: usize,
    /// Granules it touches.
    pub(crate) granules: usize,
}

impl LinkCursor {
    /// Checks a link of `len > 0` bytes at `phys`, the `index`-th segment of
    /// the request, against the rule and advances past it; returns its
    /// offset in the run.
    #[inline(always)]
    pub(crate) fn check(
        &mut self,
        phys: PhysAddr,
        len: u64,
        index: usize,
    ) -> Result<u64, MapError> {
        let lead = phys.offset_in(GRANULE);
        let first = self.end == 0;
        if self.end % GRANULE != 0 || (!first && lead != 0) {
            return Err(MapError::Unaligned {
                index,
                granule: GRANULE,
            });
        }
        let at = if first { lead } else { self.end };
        self.end = at.checked_add(len).ok_or(MapError::Overflow {
            start: phys.as_u64(),
            len,
        })?;
        Ok(at)
    }

    /// Advances past a link that [`check`](Self::check) accepted in the
    /// same order, and says where it lands.
    #[inline(always)]
    pub(crate) fn advance(&mut self, phys: PhysAddr, len: u64) -> Placed {
        let lead = phys.offset_in(GRANULE);
        let at = if self.end == 0 { lead } else { self.end };
        self.end = at + len;
        Placed {
            at,
            first_granule: (at / GRANULE) as usize,
            granules: (lead + len).div_ceil(GRANULE) as usize,
        }
    }

    /// Bytes the run needs, from its first granule (zero: no link).
    #[inline(always)]
    pub(crate) fn bytes(&self) -> u64 {
        self.end
    }
}

/// A software IOMMU domain of brand `Dm`: the IOVA space of the devices
/// attached to it.
///
/// Neither `Send` nor `Sync`: its table and allocator live in `Cell`s over
/// a borrowed table; it stays on the thread that made it.
///
/// ```
/// use dmaspace::iommu::{IommuDomain, IommuPerm, Pte};
/// use dmaspace::PhysAddr;
/// dmaspace::brand!(Dom);
/// let mut table = [Pte::EMPTY; 64];
/// let dom = IommuDomain::<Dom>::new(0x1000_0000, &mut table)?;
/// let mut range = dom.alloc(8192)?;
/// // SAFETY: 0x7000.. is memory this example owns (the addresses are simulated).
/// let iova = unsafe { range.link(PhysAddr::new(0x7000), 8192, IommuPerm::READ)? }.as_u64();
/// assert!(dom.translate(iova, IommuPerm::READ).is_err()); // linked, not yet synced
/// range.sync();
/// assert_eq!(dom.translate(iova + 4100, IommuPerm::READ)?, PhysAddr::new(0x8004));
/// assert!(dom.translate(iova, IommuPerm::WRITE).is_err()); // read-only mapping
/// drop(range);                                              // unlinks and frees
/// assert!(dom.translate(iova, IommuPerm::READ).is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct IommuDomain<'t, Dm: Brand> {
    core: DomainCore<'t>,
    _brand: PhantomData<fn() -> Dm>,
}

impl<'t, Dm: Brand> IommuDomain<'t, Dm> {
    /// A domain whose aperture starts at IOVA `base` and covers one granule
    /// per entry of `table`.
    ///
    /// # Errors
    /// [`MapError::BadAperture`] if `base` is not granule-aligned or the
    /// aperture passes the top of the address space.
    ///
    /// ```
    /// # use dmaspace::iommu::{IommuDomain, Pte};
    /// dmaspace::brand!(D);
    /// let mut t = vec![Pte::EMPTY; 1 << 10];
    /// let d = IommuDomain::<D>::new(0, &mut t)?;
    /// assert_eq!(d.aperture_len(), 4 << 20);
    /// assert!(IommuDomain::<D>::new(0x800, &mut [Pte::EMPTY; 1]).is_err());
    /// # Ok::<(), dmaspace::error::MapError>(())
    /// ```
    pub fn new(base: u64, table: &'t mut [Pte]) -> Result<Self, MapError> {
        let len = (table.len() as u64).saturating_mul(GRANULE);
        if base % GRANULE != 0 || base.checked_add(len).is_none() {
            return Err(MapError::BadAperture { base, len });
        }
        table.fill(Pte::EMPTY);
        Ok(Self {
            core: DomainCore {
                base,
                table: Cell::from_mut(table).as_slice_of_cells(),
                rover: Cell::new(0),
            },
            _brand: PhantomData,
        })
    }

    /// Bytes of IOVA space the domain covers.
    ///
    /// ```
    /// # use dmaspace::iommu::{IommuDomain, Pte};
    /// # dmaspace::brand!(D);
    /// # let mut t = [Pte::EMPTY; 2];
    /// # let d = IommuDomain::<D>::new(0, &mut t)?;
    /// assert_eq!(d.aperture_len(), 8192);
    /// # Ok::<(), dmaspace::error::MapError>(())
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
    /// # let d = IommuDomain::<D>::new(0, &mut t)?;
    /// let r = d.alloc(3 * 4096)?;
    /// assert!(d.alloc(2 * 4096).is_err());
    /// drop(r);
    /// assert!(d.alloc(4 * 4096).is_ok());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn alloc(&self, len: u64) -> Result<IovaRange<'_, Dm>, MapError> {
        let lease = usize::try_from(len.div_ceil(GRANULE))
            .ok()
            .and_then(|c| self.core.reserve(c, u64::MAX))
            .ok_or(MapError::IovaExhausted { len })?;
        Ok(IovaRange {
            lease,
            cursor: LinkCursor::default(),
            links: 0,
            _brand: PhantomData,
        })
    }

    /// What a device attached to this domain reaches when it emits `addr`
    /// for an access `wanted`: the physical address, or the fault a hardware
    /// IOMMU would raise. `addr` is a bare number on purpose: it is what the
    /// device put on the bus (an emulator reads it from a descriptor).
    ///
    /// # Errors
    /// [`IommuFault::NotPresent`] if nothing synced is mapped there,
    /// [`IommuFault::Denied`] if the mapping forbids the access.
    ///
    /// ```
    /// # use dmaspace::iommu::{IommuDomain, IommuPerm, Pte};
    /// # dmaspace::brand!(D);
    /// # let mut t = [Pte::EMPTY; 4];
    /// # let d = IommuDomain::<D>::new(0, &mut t)?;
    /// assert!(d.translate(0, IommuPerm::READ).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn translate(&self, addr: u64, wanted: IommuPerm) -> Result<PhysAddr, IommuFault> {
        let idx = self
            .core
            .index_of(addr)
            .ok_or(IommuFault::NotPresent { addr })?;
        let e = self.core.table[idx].get().0;
        if e & PTE_PRESENT == 0 {
            return Err(IommuFault::NotPresent { addr });
        }
        let allowed = IommuPerm::from_bits_truncate((e & PTE_PERM) as u8);
        if !allowed.contains(wanted) {
            return Err(IommuFault::Denied {
                addr,
                wanted,
                allowed,
            });
        }
        Ok(PhysAddr::new((e & PTE_ADDR_MASK) | (addr % GRANULE)))
    }

    /// Whether the entry that maps `addr` is marked MMIO (P2P memory reached
    /// through the host bridge: never cache-synced, never bounced).
    ///
    /// ```
    /// # use dmaspace::iommu::{IommuDomain, Pte};
    /// # dmaspace::brand!(D);
    /// # let mut t = [Pte::EMPTY; 1];
    /// # let d = IommuDomain::<D>::new(0, &mut t)?;
    /// assert!(!d.is_mmio(0));
    /// # Ok::<(), dmaspace::error::MapError>(())
    /// ```
    #[must_use]
    pub fn is_mmio(&self, addr: u64) -> bool {
        self.core
            .index_of(addr)
            .is_some_and(|i| self.core.table[i].get().0 & PTE_MMIO != 0)
    }

    /// Number of granules currently reserved (for leak checks).
    ///
    /// ```
    /// # use dmaspace::iommu::{IommuDomain, Pte};
    /// # dmaspace::brand!(D);
    /// # let mut t = [Pte::EMPTY; 4];
    /// # let d = IommuDomain::<D>::new(0, &mut t)?;
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
            .field("base", &format_args!("{:#x}", self.core.base))
            .field("aperture_len", &self.aperture_len())
            .finish()
    }
}

/// A contiguous IOVA range of domain `Dm`, being filled by links
/// (`struct dma_iova_state`). It borrows its domain, and links are made on
/// the range itself, so it cannot be linked in another domain. Dropping it
/// unlinks and frees the whole range.
pub struct IovaRange<'d, Dm: Brand> {
    lease: IovaLease<'d>,
    cursor: LinkCursor,
    links: usize,
    _brand: PhantomData<fn() -> Dm>,
}

impl<Dm: Brand> IovaRange<'_, Dm> {
    /// First IOVA of the range (granule-aligned).
    ///
    /// ```
    /// # use dmaspace::iommu::{IommuDomain, Pte};
    /// # dmaspace::brand!(D);
    /// # let mut t = [Pte::EMPTY; 4];
    /// # let d = IommuDomain::<D>::new(0x10000, &mut t)?;
    /// assert_eq!(d.alloc(1)?.start().as_u64(), 0x10000);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn start(&self) -> Iova<Dm> {
        Iova::from_raw(self.lease.start())
    }

    /// Length of the range in bytes.
    ///
    /// ```
    /// # use dmaspace::iommu::{IommuDomain, Pte};
    /// # dmaspace::brand!(D);
    /// # let mut t = [Pte::EMPTY; 4];
    /// # let d = IommuDomain::<D>::new(0, &mut t)?;
    /// assert_eq!(d.alloc(5000)?.len(), 8192);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn len(&self) -> u64 {
        self.lease.len()
    }

    /// Always false: a range has at least one granule.
    ///
    /// ```
    /// # use dmaspace::iommu::{IommuDomain, Pte};
    /// # dmaspace::brand!(D);
    /// # let mut t = [Pte::EMPTY; 4];
    /// # let d = IommuDomain::<D>::new(0, &mut t)?;
    /// assert!(!d.alloc(1)?.is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.lease.count == 0
    }

    /// Links `[phys, phys + len)` at the range's cursor (`dma_iova_link`)
    /// and returns the IOVA of `phys`. Only the first link may start inside
    /// a granule; a link that ends inside a granule must be the last.
    ///
    /// # Safety
    /// `[phys, phys + len)`, rounded out to whole granules, must be memory
    /// the caller may let the domain's devices access with `perm` until the
    /// range is dropped: nothing else may use it meanwhile (for host RAM:
    /// no CPU reference writes it while devices may, and it is not freed).
    /// Mappers do this with borrows; this raw API cannot check it.
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
    /// # let d = IommuDomain::<D>::new(0, &mut t)?;
    /// let mut r = d.alloc(3 * 4096)?;
    /// // SAFETY (all three): simulated physical addresses this example owns.
    /// let a = unsafe { r.link(PhysAddr::new(0x1200), 0xe00, IommuPerm::READ)? }; // unaligned start: fine
    /// assert_eq!(a.as_u64() % 4096, 0x200);
    /// unsafe { r.link(PhysAddr::new(0x9000), 0x800, IommuPerm::READ)? };          // ends mid-granule
    /// assert!(unsafe { r.link(PhysAddr::new(0xa000), 0x1000, IommuPerm::READ) }.is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub unsafe fn link(
        &mut self,
        phys: PhysAddr,
        len: u64,
        perm: IommuPerm,
    ) -> Result<Iova<Dm>, MapError> {
        let index = self.links;
        if len == 0 {
            return Err(MapError::EmptySegment { index });
        }
        phys.checked_add(len - 1).ok_or(MapError::Overflow {
            start: phys.as_u64(),
            len,
        })?;
        let mut next = self.cursor;
        next.check(phys, len, index)?;
        if next.bytes() > self.len() {
            return Err(MapError::IovaExhausted { len });
        }
        let placed = self.cursor.advance(phys, len);
        self.links += 1;
        let entries = &self.lease.entries()[placed.first_granule..][..placed.granules];
        fill(
            entries,
            phys.align_down(GRANULE).as_u64(),
            link_flags(perm, false),
        );
        Ok(Iova::from_raw(self.lease.start() + placed.at))
    }

    /// Makes every link of the range visible to devices (`dma_iova_sync`).
    /// Before this, the device faults on the range.
    ///
    /// ```
    /// # use dmaspace::iommu::{IommuDomain, IommuPerm, Pte};
    /// # use dmaspace::PhysAddr;
    /// # dmaspace::brand!(D);
    /// # let mut t = [Pte::EMPTY; 4];
    /// # let d = IommuDomain::<D>::new(0, &mut t)?;
    /// let mut r = d.alloc(4096)?;
    /// // SAFETY: a simulated page this example owns.
    /// let a = unsafe { r.link(PhysAddr::new(0x1000), 4096, IommuPerm::WRITE)? };
    /// r.sync();
    /// assert_eq!(d.translate(a.as_u64(), IommuPerm::WRITE)?, PhysAddr::new(0x1000));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn sync(&mut self) {
        self.lease.sync();
    }
}

impl<Dm: Brand> fmt::Debug for IovaRange<'_, Dm> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IovaRange")
            .field("domain", &Dm::NAME)
            .field("start", &self.start())
            .field("len", &self.len())
            .field("linked", &self.cursor.bytes())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    crate::brand!(TDom);

    fn link(r: &mut IovaRange<'_, TDom>, phys: u64, len: u64) -> Result<u64, MapError> {
        // SAFETY: test apertures and simulated physical addresses only.
        unsafe { r.link(PhysAddr::new(phys), len, IommuPerm::READ) }.map(Iova::as_u64)
    }

    #[test]
    fn allocator_never_overlaps_and_reuses_freed() {
        let mut t = [Pte::EMPTY; 16];
        let d = IommuDomain::<TDom>::new(0x10_0000, &mut t).unwrap();
        let a = d.alloc(4 * GRANULE).unwrap();
        let b = d.alloc(8 * GRANULE).unwrap();
        let c = d.alloc(4 * GRANULE).unwrap();
        let spans = [
            (a.start().as_u64(), a.len()),
            (b.start().as_u64(), b.len()),
            (c.start().as_u64(), c.len()),
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
    fn reserve_stays_below_the_mask() {
        // Aperture 0xffff_c000.. (4 granules below 4 GiB, 4 above).
        let mut t = [Pte::EMPTY; 8];
        let d = IommuDomain::<TDom>::new(0xffff_c000, &mut t).unwrap();
        let mask = u64::from(u32::MAX);
        let mut held = std::vec::Vec::new();
        while let Some(l) = d.core().reserve(1, mask) {
            assert!(l.start() + GRANULE - 1 <= mask, "{:#x}", l.start());
            held.push(l);
        }
        assert_eq!(held.len(), 4, "exactly the granules below 4 GiB");
        assert!(
            d.core().reserve(1, u64::MAX).is_some(),
            "above the mask is free"
        );
        assert!(
            d.core().reserve(1, 0xffff_bfff).is_none(),
            "aperture beyond the mask"
        );
    }

    #[test]
    fn link_rules_and_translation() {
        let mut t = [Pte::EMPTY; 8];
        let d = IommuDomain::<TDom>::new(0, &mut t).unwrap();
        let mut r = d.alloc(3 * GRANULE).unwrap();
        let a = link(&mut r, 0x5f00, 0x100).unwrap();
        assert_eq!(a, 0xf00);
        let b = link(&mut r, 0x9000, 0x2000).unwrap();
        assert_eq!(b, 0x1000);
        // Full: the range has no room for another granule.
        assert!(matches!(
            link(&mut r, 0xb000, 0x1000),
            Err(MapError::IovaExhausted { .. })
        ));
        assert_eq!(
            d.translate(a, IommuPerm::READ),
            Err(IommuFault::NotPresent { addr: a })
        );
        r.sync();
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
        let mut t = [Pte::EMPTY; 8];
        let d = IommuDomain::<TDom>::new(0, &mut t).unwrap();
        let mut r = d.alloc(4 * GRANULE).unwrap();
        link(&mut r, 0x1000, 0x1000).unwrap();
        assert_eq!(
            link(&mut r, 0x2100, 0x100),
            Err(MapError::Unaligned {
                index: 1,
                granule: GRANULE
            })
        );
        link(&mut r, 0x3000, 0x800).unwrap();
        assert_eq!(
            link(&mut r, 0x4000, 0x1000),
            Err(MapError::Unaligned {
                index: 2,
                granule: GRANULE
            })
        );
    }
}
