//! The software IOMMU backend: a sparse page table in memory that devices
//! "use" through [`SoftIommu::translate`]. The reference backend and the
//! test double: tests and device emulators check through it what a device
//! would reach.

use core::fmt;

use super::GRANULE;
use super::page_table::{SoftPageTable, TableError, TableWriter};
use crate::addr::PhysAddr;
use crate::backend::{AddrKind, BackendError, BackendErrorKind, IommuBackend, Linker};
use crate::dir::IommuPerm;
use crate::error::IommuFault;

// Entry layout: physical granule base in bits 63..12; the `IommuPerm` bits
// as they are (the one form of permissions); then the entry's state.
const PTE_PERM: u64 = IommuPerm::all().bits() as u64;
const PTE_MMIO: u64 = 1 << 2;
/// Linked by `map`, not yet visible (`dma_iova_link` before `dma_iova_sync`).
const PTE_LINKED: u64 = 1 << 4;
/// Visible to devices.
const PTE_PRESENT: u64 = 1 << 5;
const PTE_ADDR_MASK: u64 = !(GRANULE - 1);

/// A software IOMMU: a 48-bit, 4 KiB-granule page table with the
/// link-then-sync discipline (entries are invisible until synced).
/// `Send + Sync`; lock-free reads.
///
/// ```
/// use dmaspace::backend::IommuBackend;
/// use dmaspace::{dir::IommuPerm, iommu::SoftIommu};
/// use dmaspace::PhysAddr;
/// let soft = SoftIommu::new(0x1000_0000, 1 << 20)?;
/// // SAFETY: a software model; the IOVA range is this example's.
/// unsafe { soft.map(0x1000_0000, 0x7000, 4096, IommuPerm::READ, false)? };
/// assert!(soft.translate(0x1000_0010, IommuPerm::READ).is_err()); // linked, not synced
/// // SAFETY: as above.
/// unsafe { soft.sync(0x1000_0000, 4096) };
/// assert_eq!(soft.translate(0x1000_0010, IommuPerm::READ)?, PhysAddr::new(0x7010));
/// // SAFETY: as above.
/// unsafe { soft.unmap(0x1000_0000, 4096) };
/// assert!(soft.translate(0x1000_0010, IommuPerm::READ).is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct SoftIommu {
    table: SoftPageTable,
    base: u64,
    len: u64,
}

impl SoftIommu {
    /// A software IOMMU whose aperture is `[base, base + len)`.
    ///
    /// # Errors
    /// [`MapError::BadAperture`](crate::error::MapError::BadAperture) if it
    /// is empty, not granule-aligned, or passes the 48-bit table.
    ///
    /// See the type-level example.
    pub fn new(base: u64, len: u64) -> Result<Self, crate::error::MapError> {
        let top = 1u64 << super::page_table::IOVA_BITS;
        let fits = base.checked_add(len).is_some_and(|end| end <= top);
        if len == 0 || base % GRANULE != 0 || len % GRANULE != 0 || !fits {
            return Err(crate::error::MapError::BadAperture { base, len });
        }
        Ok(Self {
            table: SoftPageTable::new(),
            base,
            len,
        })
    }

    /// What a device reaches when it emits `addr` for an access `wanted`:
    /// the physical address, or the fault a hardware IOMMU would raise.
    /// `addr` is a bare number on purpose: it is what the device put on the
    /// bus (an emulator reads it from a descriptor).
    ///
    /// # Errors
    /// [`IommuFault::NotPresent`] if nothing synced is mapped there,
    /// [`IommuFault::Denied`] if the mapping forbids the access.
    ///
    /// See the type-level example.
    pub fn translate(&self, addr: u64, wanted: IommuPerm) -> Result<PhysAddr, IommuFault> {
        let e = self.table.get(addr);
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
    /// let soft = dmaspace::iommu::SoftIommu::new(0, 4096)?;
    /// assert!(!soft.is_mmio(0));
    /// # Ok::<(), dmaspace::error::MapError>(())
    /// ```
    #[must_use]
    pub fn is_mmio(&self, addr: u64) -> bool {
        self.table.get(addr) & PTE_MMIO != 0
    }

    /// Writes the entries of the `len / GRANULE` granules from `iova`:
    /// `first`, then the same flags at each next granule's address.
    #[inline(always)]
    fn write_run(&self, iova: u64, len: u64, first: u64) -> Result<(), BackendError> {
        let count = (len / GRANULE) as usize;
        self.table
            .set(iova, count, |i| first.wrapping_add(i as u64 * GRANULE))
            .map_err(|e| table_error("soft IOMMU map", e))
    }

    /// Whether any entry of `[iova, iova + len)` is linked or visible (for
    /// leak checks).
    #[cfg(test)]
    pub(crate) fn any_mapped(&self, iova: u64, len: u64) -> bool {
        (0..len.div_ceil(GRANULE)).any(|g| self.table.get(iova + g * GRANULE) != 0)
    }
}

/// The first entry of a mapping of `addr` with `perm`, linked (not yet
/// present); the next granules' entries follow by `GRANULE`.
#[inline(always)]
fn first_entry(addr: u64, perm: IommuPerm, mmio: bool) -> u64 {
    let flags = perm.bits() as u64 | if mmio { PTE_MMIO } else { 0 } | PTE_LINKED;
    (addr & PTE_ADDR_MASK) | flags
}

/// The software IOMMU's [`Linker`]: it keeps the last leaf table it wrote.
pub struct SoftLinker<'a> {
    writer: TableWriter<'a>,
    perm: IommuPerm,
}

impl fmt::Debug for SoftLinker<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SoftLinker({:?})", self.perm)
    }
}

impl Linker for SoftLinker<'_> {
    #[inline(always)]
    unsafe fn link(
        &mut self,
        iova: u64,
        addr: u64,
        len: u64,
        mmio: bool,
    ) -> Result<(), BackendError> {
        let count = (len / GRANULE) as usize;
        self.writer
            .set_run(iova, count, first_entry(addr, self.perm, mmio))
            .map_err(|e| table_error("soft IOMMU map", e))
    }
}

fn table_error(op: &'static str, e: TableError) -> BackendError {
    let kind = match e {
        TableError::BadRange { .. } => BackendErrorKind::BadRange,
        TableError::NoMemory => BackendErrorKind::NoMemory,
    };
    BackendError::new(op, 0, kind)
}

// SAFETY: a software IOMMU has no attach step: its "devices" are the
// mappers' outputs, which reach memory through this table only.
unsafe impl crate::backend::AttachedByConstruction for SoftIommu {}

// SAFETY: `map` writes exactly the entries of the range (the table is all
// or nothing); entries are invisible to `translate` until `sync` marks them
// present; `unmap` zeroes them, after which `translate` faults; the
// granule and aperture are constants; the table is thread-safe for
// disjoint ranges.
unsafe impl IommuBackend for SoftIommu {
    const MAPS: AddrKind = AddrKind::Phys;
    type Linker<'a> = SoftLinker<'a>;

    fn linker(&self, perm: IommuPerm) -> SoftLinker<'_> {
        SoftLinker {
            writer: TableWriter::new(&self.table),
            perm,
        }
    }

    fn granule(&self) -> u64 {
        GRANULE
    }

    fn aperture(&self) -> (u64, u64) {
        (self.base, self.len)
    }

    #[inline]
    unsafe fn map(
        &self,
        iova: u64,
        addr: u64,
        len: u64,
        perm: IommuPerm,
        mmio: bool,
    ) -> Result<(), BackendError> {
        self.write_run(iova, len, first_entry(addr, perm, mmio))
    }

    /// One pass: the entries are written linked and present at once, as
    /// `map` then `sync` leave them.
    #[inline]
    unsafe fn map_synced(
        &self,
        iova: u64,
        addr: u64,
        len: u64,
        perm: IommuPerm,
        mmio: bool,
    ) -> Result<(), BackendError> {
        self.write_run(iova, len, first_entry(addr, perm, mmio) | PTE_PRESENT)
    }

    #[inline]
    #[expect(
        clippy::cast_possible_truncation,
        reason = "granules of a range the table holds, which are indexed by usize"
    )]
    unsafe fn sync(&self, iova: u64, len: u64) {
        // Only entries of this range change, and only linked ones: an
        // absent table stays absent, so this cannot run out of memory.
        let _ = self
            .table
            .update(iova, len.div_ceil(GRANULE) as usize, |e| {
                if e & PTE_LINKED != 0 {
                    e | PTE_PRESENT
                } else {
                    e
                }
            });
    }

    #[inline]
    #[expect(
        clippy::cast_possible_truncation,
        reason = "granules of a range the table holds, which are indexed by usize"
    )]
    unsafe fn unmap(&self, iova: u64, len: u64) {
        // Zeroing never makes a table, so it cannot fail for lack of memory;
        // a range outside the table holds nothing to unmap.
        let _ = self.table.clear(iova, len.div_ceil(GRANULE) as usize);
    }
}

impl fmt::Debug for SoftIommu {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SoftIommu({:#x} + {:#x})", self.base, self.len)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn map_synced_writes_what_map_then_sync_write() {
        let soft = SoftIommu::new(0, 1 << 30).unwrap();
        let base = 510 * GRANULE; // the run crosses a leaf boundary
        for (i, (perm, mmio)) in [
            (IommuPerm::READ, false),
            (IommuPerm::WRITE, true),
            (IommuPerm::all(), false),
        ]
        .into_iter()
        .enumerate()
        {
            let (a, b) = (
                base + 8 * i as u64 * GRANULE,
                base + (64 + 8 * i as u64) * GRANULE,
            );
            let addr = 0x7_0000 + i as u64 * GRANULE;
            // SAFETY: a software model; the IOVA ranges are this test's.
            unsafe { soft.map(a, addr, 4 * GRANULE, perm, mmio) }.unwrap();
            // SAFETY: as above.
            unsafe { soft.sync(a, 4 * GRANULE) };
            // SAFETY: as above.
            unsafe { soft.map_synced(b, addr, 4 * GRANULE, perm, mmio) }.unwrap();
            for g in 0..5 {
                let (x, y) = (
                    soft.table.get(a + g * GRANULE),
                    soft.table.get(b + g * GRANULE),
                );
                assert_eq!(x, y, "granule {g} of case {i}");
            }
        }
        // Refused alike: a range beyond the table.
        let top = 1u64 << super::super::page_table::IOVA_BITS;
        // SAFETY: nothing is mapped; the call is refused.
        let e = unsafe { soft.map_synced(top, 0, GRANULE, IommuPerm::READ, false) };
        // SAFETY: as above.
        let f = unsafe { soft.map(top, 0, GRANULE, IommuPerm::READ, false) };
        assert_eq!(e.map_err(|e| e.kind()), f.map_err(|e| e.kind()));
        assert!(e.is_err());
    }
}
