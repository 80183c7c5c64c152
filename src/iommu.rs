//! IOMMU domains: the crate's IOVA space ([`iova_alloc`]) in front of a
//! backend that programs translations ([`IommuBackend`]: the software model
//! [`SoftIommu`], VFIO, iommufd), with the permissions and the
//! link-then-sync discipline of `dma_iova_link()` / `dma_iova_sync()`.
//!
//! Mappers link through a domain; the raw range API
//! ([`IommuDomain::alloc`], [`IovaRange::link`]) is `unsafe` to link,
//! because it takes any address and would otherwise let safe code grant a
//! device any page.

#[cfg(feature = "alloc")]
pub mod iova_alloc;
#[cfg(feature = "alloc")]
mod lease;
mod link;
#[cfg(feature = "alloc")]
pub(crate) mod page_table;
#[cfg(feature = "alloc")]
mod soft;

#[cfg(feature = "alloc")]
use core::fmt;
#[cfg(feature = "alloc")]
use core::marker::PhantomData;

use crate::addr::PAGE_SIZE;
#[cfg(feature = "alloc")]
use crate::addr::{Iova, PhysAddr};
#[cfg(feature = "alloc")]
use crate::backend::IommuBackend;
#[cfg(feature = "alloc")]
use crate::brand::{Brand, Invariant};
#[cfg(feature = "alloc")]
use crate::dir::IommuPerm;
#[cfg(feature = "alloc")]
use crate::error::{IommuFault, MapError};
#[cfg(feature = "alloc")]
use crate::sync::SpinLock;
#[cfg(feature = "alloc")]
use iova_alloc::IovaAllocator;
#[cfg(feature = "alloc")]
pub(crate) use lease::{IovaLease, LeaseLinker, Pool};
pub(crate) use link::{Lease, LeaseLink, LinkCursor, LinkLease, Placed};
#[cfg(feature = "alloc")]
pub use soft::{SoftIommu, SoftLinker};

/// The IOMMU granule: one page table entry maps this many bytes.
pub const GRANULE: u64 = PAGE_SIZE;
// Host memory's granule cover check (`host.rs`) uses the page size as the
// granule; it must stay this.
const _: () = assert!(GRANULE == PAGE_SIZE);

/// An IOMMU domain of brand `Dm`: the IOVA space of the devices attached
/// to it, and the backend `B` that translates it.
///
/// `Send + Sync` when the backend is: every queue of a controller maps
/// through one `&IommuDomain` at once.
///
/// ```
/// use dmaspace::{dir::IommuPerm, iommu::IommuDomain};
/// use dmaspace::PhysAddr;
/// dmaspace::brand!(Dom);
/// let dom = IommuDomain::<Dom>::software(0x1000_0000, 64 * 4096)?;
/// let range = dom.alloc(8192)?;
/// // SAFETY: 0x7000.. is memory this example owns (the addresses are simulated).
/// let iova = unsafe { range.link(0x7000, 8192, IommuPerm::READ)? }.as_u64();
/// assert!(dom.translate(iova, IommuPerm::READ).is_err()); // linked, not yet synced
/// range.sync();
/// assert_eq!(dom.translate(iova + 4100, IommuPerm::READ)?, PhysAddr::new(0x8004));
/// assert!(dom.translate(iova, IommuPerm::WRITE).is_err()); // read-only mapping
/// drop(range);                                              // unlinks and frees
/// assert!(dom.translate(iova, IommuPerm::READ).is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[cfg(feature = "alloc")]
pub struct IommuDomain<Dm: Brand, B: IommuBackend = SoftIommu> {
    backend: B,
    iova: IovaAllocator,
    _brand: Invariant<Dm>,
}

#[cfg(feature = "alloc")]
impl<Dm: Brand, B: IommuBackend> IommuDomain<Dm, B> {
    /// A domain over `backend`'s aperture.
    ///
    /// # Errors
    /// [`MapError::BadAperture`] if the backend's aperture is unusable or
    /// its granule is not [`GRANULE`] (4 KiB: the link rule and the
    /// whole-granule checks are made at that size; larger IOMMU pages are
    /// not supported yet).
    ///
    /// ```
    /// use dmaspace::iommu::{IommuDomain, SoftIommu};
    /// dmaspace::brand!(D);
    /// let d = IommuDomain::<D, SoftIommu>::new(SoftIommu::new(0, 1 << 30)?)?;
    /// assert_eq!(d.aperture(), (0, 1 << 30));
    /// # Ok::<(), dmaspace::error::MapError>(())
    /// ```
    pub fn new(backend: B) -> Result<Self, MapError> {
        let (base, len) = backend.aperture();
        if backend.granule() != GRANULE {
            return Err(MapError::BadAperture { base, len });
        }
        Ok(Self {
            iova: IovaAllocator::new(base, len, GRANULE)?,
            backend,
            _brand: PhantomData,
        })
    }

    /// The backend.
    ///
    /// See [`IommuDomain::new`].
    #[must_use]
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// The aperture `(base, len)`.
    ///
    /// See [`IommuDomain::new`].
    #[must_use]
    pub fn aperture(&self) -> (u64, u64) {
        self.backend.aperture()
    }

    /// Bytes of IOVA space handed out (for leak checks).
    ///
    /// ```
    /// # use dmaspace::iommu::IommuDomain;
    /// # dmaspace::brand!(D);
    /// let d = IommuDomain::<D>::software(0, 1 << 20)?;
    /// let r = d.alloc(5000)?;
    /// assert_eq!(d.reserved_bytes(), 8192);
    /// drop(r);
    /// assert_eq!(d.reserved_bytes(), 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn reserved_bytes(&self) -> u64 {
        self.iova.allocated_bytes()
    }

    /// Reserves `bytes` of IOVA space whose last byte is at most `mask`.
    pub(crate) fn reserve(&self, bytes: u64, mask: u64) -> Option<IovaLease<'_, B>> {
        IovaLease::reserve(&self.backend, Pool::Shared(&self.iova), bytes, mask)
    }

    /// The backend and the allocator, for a mapper (which erases the brand).
    pub(crate) fn parts(&self) -> (&B, &IovaAllocator) {
        (&self.backend, &self.iova)
    }

    /// Reserves a contiguous IOVA range of at least `len` bytes
    /// (`dma_iova_try_alloc`). Dropping the range unlinks and frees it.
    ///
    /// # Errors
    /// [`MapError::IovaExhausted`] if no free run is large enough.
    ///
    /// ```
    /// # use dmaspace::iommu::IommuDomain;
    /// # dmaspace::brand!(D);
    /// let d = IommuDomain::<D>::software(0, 4 * 4096)?;
    /// let r = d.alloc(3 * 4096)?;
    /// assert!(d.alloc(2 * 4096).is_err());
    /// drop(r);
    /// assert!(d.alloc(4 * 4096).is_ok());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn alloc(&self, len: u64) -> Result<IovaRange<'_, Dm, B>, MapError> {
        let lease = self
            .reserve(len.max(1), u64::MAX)
            .ok_or(MapError::IovaExhausted { len })?;
        Ok(IovaRange {
            lease,
            links: SpinLock::new(Links::default()),
            _brand: PhantomData,
        })
    }
}

#[cfg(feature = "alloc")]
impl<Dm: Brand> IommuDomain<Dm, SoftIommu> {
    /// A domain of the software IOMMU over `[base, base + len)`.
    ///
    /// # Errors
    /// [`MapError::BadAperture`] if the aperture is empty, not
    /// granule-aligned, or passes the 48-bit table.
    ///
    /// ```
    /// # use dmaspace::iommu::IommuDomain;
    /// dmaspace::brand!(D);
    /// // A 48-bit aperture costs nothing up front.
    /// let d = IommuDomain::<D>::software(1 << 32, (1 << 48) - (1 << 32))?;
    /// assert!(IommuDomain::<D>::software(0x800, 4096).is_err());
    /// # Ok::<(), dmaspace::error::MapError>(())
    /// ```
    pub fn software(base: u64, len: u64) -> Result<Self, MapError> {
        Self::new(SoftIommu::new(base, len)?)
    }

    /// What a device attached to this domain reaches when it emits `addr`;
    /// see [`SoftIommu::translate`].
    ///
    /// # Errors
    /// As [`SoftIommu::translate`].
    ///
    /// See the type-level example.
    pub fn translate(&self, addr: u64, wanted: IommuPerm) -> Result<PhysAddr, IommuFault> {
        self.backend.translate(addr, wanted)
    }

    /// Whether `addr` is mapped as MMIO; see [`SoftIommu::is_mmio`].
    ///
    /// See [`SoftIommu::is_mmio`].
    #[must_use]
    pub fn is_mmio(&self, addr: u64) -> bool {
        self.backend.is_mmio(addr)
    }

    /// Granules of IOVA space handed out (for leak checks).
    ///
    /// See [`IommuDomain::reserved_bytes`].
    #[must_use]
    pub fn reserved_granules(&self) -> usize {
        (self.reserved_bytes() / GRANULE) as usize
    }
}

#[cfg(feature = "alloc")]
impl<Dm: Brand, B: IommuBackend + fmt::Debug> fmt::Debug for IommuDomain<Dm, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IommuDomain")
            .field("brand", &Dm::NAME)
            .field("backend", &self.backend)
            .field("reserved_bytes", &self.reserved_bytes())
            .finish()
    }
}

/// A contiguous IOVA range of domain `Dm`, being filled by links
/// (`struct dma_iova_state`). It borrows its domain, and links are made on
/// the range itself, so it cannot be linked in another domain. Dropping it
/// unlinks and frees the whole range.
///
/// The [`Iova`]s it hands out ([`start`](Self::start),
/// [`link`](Self::link)) borrow it, so none outlives the free: after
/// `drop(range)` the domain may hand the same addresses to another mapping,
/// and a kept IOVA would name that mapping's memory
/// (`tests/ui/iova_outlives_range.rs`). That is why linking and syncing take
/// `&self`: a range can be linked further while IOVAs of it are held.
///
/// ```compile_fail,E0505
/// # use dmaspace::iommu::IommuDomain;
/// # dmaspace::brand!(D);
/// # let d = IommuDomain::<D>::software(0, 1 << 20)?;
/// let r = d.alloc(4096)?;
/// let iova = r.start();
/// drop(r); // error: `r` is still borrowed by `iova`
/// let _ = iova;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[cfg(feature = "alloc")]
pub struct IovaRange<'d, Dm: Brand, B: IommuBackend = SoftIommu> {
    lease: IovaLease<'d, B>,
    /// The link cursor and the number of links so far, behind a lock so
    /// that links are made through `&self` (the range stays `Sync`).
    links: SpinLock<Links>,
    _brand: Invariant<Dm>,
}

/// Where the next link of an [`IovaRange`] goes.
#[cfg(feature = "alloc")]
#[derive(Default)]
struct Links {
    cursor: LinkCursor,
    count: usize,
}

#[cfg(feature = "alloc")]
impl<Dm: Brand, B: IommuBackend> IovaRange<'_, Dm, B> {
    /// First IOVA of the range (granule-aligned).
    ///
    /// ```
    /// # use dmaspace::iommu::IommuDomain;
    /// # dmaspace::brand!(D);
    /// let d = IommuDomain::<D>::software(0x10000, 4096)?;
    /// assert_eq!(d.alloc(1)?.start().as_u64(), 0x10000);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn start(&self) -> Iova<'_, Dm> {
        Iova::from_raw(self.lease.start())
    }

    /// Length of the range in bytes.
    ///
    /// ```
    /// # use dmaspace::iommu::IommuDomain;
    /// # dmaspace::brand!(D);
    /// # let d = IommuDomain::<D>::software(0, 1 << 20)?;
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
    /// # use dmaspace::iommu::IommuDomain;
    /// # dmaspace::brand!(D);
    /// # let d = IommuDomain::<D>::software(0, 1 << 20)?;
    /// assert!(!d.alloc(1)?.is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.lease.len() == 0
    }

    /// Links `[addr, addr + len)` at the range's cursor (`dma_iova_link`)
    /// and returns the IOVA of `addr`, borrowed from the range. `addr` is what the backend maps: a
    /// physical address for the software IOMMU, a process virtual address
    /// for VFIO and iommufd. Only the first link may start inside a
    /// granule; a link that ends inside a granule must be the last.
    ///
    /// # Safety
    /// `[addr, addr + len)`, rounded out to whole granules, must be memory
    /// the caller may let the domain's devices access with `perm` until the
    /// range is dropped: nothing else may use it meanwhile (for host RAM:
    /// no CPU reference writes it while devices may, and it is not freed).
    /// Mappers do this with borrows; this raw API cannot check it.
    ///
    /// # Errors
    /// [`MapError::Unaligned`] against the rule above,
    /// [`MapError::IovaExhausted`] past the end of the range,
    /// [`MapError::EmptySegment`] for `len == 0`,
    /// [`MapError::Overflow`] if the range wraps,
    /// [`MapError::Backend`] if the backend refuses.
    ///
    /// ```
    /// # use dmaspace::{dir::IommuPerm, iommu::IommuDomain};
    /// # dmaspace::brand!(D);
    /// # let d = IommuDomain::<D>::software(0, 1 << 20)?;
    /// let r = d.alloc(3 * 4096)?;
    /// // SAFETY (all three): simulated physical addresses this example owns.
    /// let a = unsafe { r.link(0x1200, 0xe00, IommuPerm::READ)? }; // unaligned start: fine
    /// assert_eq!(a.as_u64() % 4096, 0x200);
    /// unsafe { r.link(0x9000, 0x800, IommuPerm::READ)? };          // ends mid-granule
    /// assert!(unsafe { r.link(0xa000, 0x1000, IommuPerm::READ) }.is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub unsafe fn link(
        &self,
        addr: u64,
        len: u64,
        perm: IommuPerm,
    ) -> Result<Iova<'_, Dm>, MapError> {
        let range_len = self.len();
        let placed = self.links.with(|links| {
            let index = links.count;
            if len == 0 {
                return Err(MapError::EmptySegment { index });
            }
            addr.checked_add(len - 1)
                .ok_or(MapError::Overflow { start: addr, len })?;
            let mut next = links.cursor;
            next.check(addr, len, index)?;
            if next.bytes() > range_len {
                return Err(MapError::IovaExhausted { len });
            }
            let placed = links.cursor.advance(addr, len);
            // SAFETY: the caller vouches for the memory; the placement is
            // inside this range (checked just above). Linking under the
            // lock keeps the cursor and the backend's links in one order.
            unsafe { self.lease.linker(perm).link(placed, addr, false) }?;
            links.count += 1;
            Ok(placed)
        })?;
        // `placed.at < range_len`, and the range lies inside the aperture.
        Ok(Iova::from_raw(self.lease.start() + placed.at))
    }

    /// Makes every link of the range visible to devices (`dma_iova_sync`).
    /// Before this, the device faults on the range.
    ///
    /// ```
    /// # use dmaspace::{dir::IommuPerm, iommu::IommuDomain};
    /// # use dmaspace::PhysAddr;
    /// # dmaspace::brand!(D);
    /// # let d = IommuDomain::<D>::software(0, 1 << 20)?;
    /// let r = d.alloc(4096)?;
    /// // SAFETY: a simulated page this example owns.
    /// let a = unsafe { r.link(0x1000, 4096, IommuPerm::WRITE)? };
    /// r.sync();
    /// assert_eq!(d.translate(a.as_u64(), IommuPerm::WRITE)?, PhysAddr::new(0x1000));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn sync(&self) {
        self.lease.sync();
    }
}

#[cfg(feature = "alloc")]
impl<Dm: Brand, B: IommuBackend> fmt::Debug for IovaRange<'_, Dm, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IovaRange")
            .field("domain", &Dm::NAME)
            .field("start", &self.start())
            .field("len", &self.len())
            .field("linked", &self.links.with(|l| l.cursor.bytes()))
            .finish()
    }
}

#[cfg(all(test, feature = "alloc"))]
mod tests {
    use super::*;

    crate::brand!(TDom);

    fn link(r: &IovaRange<'_, TDom>, phys: u64, len: u64) -> Result<u64, MapError> {
        // SAFETY: test apertures and simulated physical addresses only.
        unsafe { r.link(phys, len, IommuPerm::READ) }.map(Iova::as_u64)
    }

    #[test]
    fn ranges_never_overlap_and_freed_space_is_reused() {
        let d = IommuDomain::<TDom>::software(0x10_0000, 16 * GRANULE).unwrap();
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
        drop(b);
        let b2 = d.alloc(8 * GRANULE).expect("freed range is reused");
        drop((a, c, b2));
        assert_eq!(d.reserved_granules(), 0);
    }

    #[test]
    fn reserve_stays_below_the_mask() {
        // Aperture 0xffff_c000.. (4 granules below 4 GiB, 4 above).
        let d = IommuDomain::<TDom>::software(0xffff_c000, 8 * GRANULE).unwrap();
        let mask = u64::from(u32::MAX);
        let mut held = std::vec::Vec::new();
        while let Some(l) = d.reserve(GRANULE, mask) {
            assert!(l.start() + GRANULE - 1 <= mask, "{:#x}", l.start());
            held.push(l);
        }
        assert_eq!(held.len(), 4, "exactly the granules below 4 GiB");
        assert!(
            d.reserve(GRANULE, u64::MAX).is_some(),
            "above the mask is free"
        );
        assert!(
            d.reserve(GRANULE, 0xffff_bfff).is_none(),
            "aperture beyond the mask"
        );
    }

    #[test]
    fn link_rules_and_translation() {
        let d = IommuDomain::<TDom>::software(0, 8 * GRANULE).unwrap();
        let r = d.alloc(3 * GRANULE).unwrap();
        let base = r.start().as_u64();
        let a = link(&r, 0x5f00, 0x100).unwrap();
        assert_eq!(a, base + 0xf00);
        let b = link(&r, 0x9000, 0x2000).unwrap();
        assert_eq!(b, base + 0x1000);
        // Full: the range has no room for another granule.
        assert!(matches!(
            link(&r, 0xb000, 0x1000),
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
        assert!(d.translate(a, IommuPerm::READ).is_err());
        assert!(!d.backend().any_mapped(0, 8 * GRANULE));
    }

    #[test]
    fn interior_links_must_be_aligned() {
        let d = IommuDomain::<TDom>::software(0, 8 * GRANULE).unwrap();
        let r = d.alloc(4 * GRANULE).unwrap();
        link(&r, 0x1000, 0x1000).unwrap();
        assert_eq!(
            link(&r, 0x2100, 0x100),
            Err(MapError::Unaligned {
                index: 1,
                granule: GRANULE
            })
        );
        link(&r, 0x3000, 0x800).unwrap();
        assert_eq!(
            link(&r, 0x4000, 0x1000),
            Err(MapError::Unaligned {
                index: 2,
                granule: GRANULE
            })
        );
    }

    #[test]
    fn domains_are_shared_by_threads() {
        fn assert_sync<T: Send + Sync>() {}
        assert_sync::<IommuDomain<TDom>>();
        let d = IommuDomain::<TDom>::software(0, 1 << 24).unwrap();
        std::thread::scope(|s| {
            for t in 0..2u64 {
                let d = &d;
                s.spawn(move || {
                    for i in 0..200u64 {
                        let r = d.alloc(GRANULE).unwrap();
                        let phys = (t << 32) | (i << 12);
                        // SAFETY: simulated addresses, never given to hardware.
                        let iova = unsafe { r.link(phys, GRANULE, IommuPerm::READ) }.unwrap();
                        r.sync();
                        assert_eq!(
                            d.translate(iova.as_u64(), IommuPerm::READ),
                            Ok(PhysAddr::new(phys))
                        );
                    }
                });
            }
        });
        assert_eq!(d.reserved_granules(), 0);
    }
}
