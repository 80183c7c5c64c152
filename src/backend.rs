//! The seam between the crate's mapping logic and an IOMMU: what a mapper
//! asks of the hardware (or its model) when it links a request into an
//! IOVA range.
//!
//! The crate owns the IOVA space (its allocator, in
//! [`IommuDomain`](crate::iommu::IommuDomain)) and the rules (the link rule,
//! permissions, the device's limits, the unmap that `mem::forget` cannot
//! skip); a backend only programs translations:
//!
//! | backend | maps | where |
//! |---|---|---|
//! | [`SoftIommu`](crate::iommu::SoftIommu) | physical addresses, into a software page table you can `translate` | `alloc` |
//! | `dmaspace_vfio::backend::vfio::VfioType1`: VFIO type1 container (`VFIO_IOMMU_MAP_DMA`) | process virtual addresses | the `dmaspace-vfio` crate, Linux |
//! | `dmaspace_vfio::backend::iommufd::IommufdIoas`: iommufd IOAS (`IOMMU_IOAS_MAP`) | process virtual addresses | the `dmaspace-vfio` crate, Linux |
//!
//! A device without an IOMMU (VFIO's no-IOMMU mode, dma-direct) has no
//! backend: [`Mapper::direct`](crate::map::Mapper::direct) uses physical
//! addresses as they are (`unsafe`; under VFIO's no-IOMMU mode the kernel
//! vouches instead: `dmaspace_vfio::backend::vfio_noiommu::no_iommu_mapper`).
//!
//! Peer memory on the same seam: `dmaspace_vfio::backend::vfio_bar::VfioBarProvider`
//! publishes a BAR of a function opened through VFIO as P2P memory, with
//! the process mapping that the virtual-address backends map for a peer.

use core::fmt;

use crate::dir::IommuPerm;

/// A backend whose translations every device reaches by construction: no
/// attach step exists that the crate cannot see (a software IOMMU, whose
/// "device" is the mapper's output). Only over such a backend is
/// [`Mapper::iommu`](crate::map::Mapper::iommu) safe; over a kernel IOMMU
/// context (a VFIO container, an iommufd IOAS) a device may be attached to
/// another context, and the mapper is built either by a constructor that
/// checks the attachment (`dmaspace_vfio::backend::vfio::type1_mapper`,
/// `dmaspace_vfio::backend::iommufd::iommufd_mapper`) or with `unsafe`
/// ([`Mapper::iommu_unchecked`](crate::map::Mapper::iommu_unchecked)).
///
/// # Safety
/// Every device a mapper is built for must reach memory through this
/// backend's translations, and no other, for as long as the mapper lives.
#[diagnostic::on_unimplemented(
    message = "nothing proves that the device is attached to `{Self}`'s IOMMU context",
    label = "`Mapper::iommu` takes only a backend every device reaches by construction",
    note = "for VFIO, build the mapper with `dmaspace_vfio::backend::vfio::type1_mapper` or `dmaspace_vfio::backend::iommufd::iommufd_mapper`, which check the attachment"
)]
pub unsafe trait AttachedByConstruction: IommuBackend {}

/// Which address of host memory a backend programs: the physical address
/// (a hardware page table, the software model) or the process virtual
/// address (VFIO and iommufd pin and translate it in the kernel).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddrKind {
    /// CPU physical addresses.
    Phys,
    /// Process virtual addresses.
    Virt,
}

/// Why a backend could not map: the operation, the OS error code where
/// there is one (errno), and what it means.
///
/// ```
/// use dmaspace::backend::{BackendError, BackendErrorKind};
/// let e = BackendError::new("VFIO_IOMMU_MAP_DMA", 12, BackendErrorKind::NoMemory);
/// assert_eq!(e.to_string(), "VFIO_IOMMU_MAP_DMA failed (errno 12): out of memory or of mapping slots");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackendError {
    op: &'static str,
    code: i32,
    kind: BackendErrorKind,
}

/// The class of a [`BackendError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BackendErrorKind {
    /// Out of memory, or of the backend's mapping slots (VFIO's `dma_entry_limit`).
    NoMemory,
    /// The memory cannot be mapped by this backend (iommufd refuses another
    /// device's BAR: a PFNMAP range).
    Unmappable,
    /// The range is outside what the backend translates, or overlaps a mapping.
    BadRange,
    /// The memory's exporter revoked it (a peer's BAR whose dma-buf VFIO
    /// revoked: decoding off, a reset, its device closed). Nothing was
    /// mapped; mappings made before are dead.
    Revoked,
    /// Anything else the OS reported.
    Other,
}

impl BackendError {
    /// An error of operation `op` with OS code `code` (0 if none).
    ///
    /// See the type-level example.
    #[must_use]
    pub const fn new(op: &'static str, code: i32, kind: BackendErrorKind) -> Self {
        Self { op, code, kind }
    }

    /// The operation that failed.
    ///
    /// See the type-level example.
    #[must_use]
    pub const fn op(&self) -> &'static str {
        self.op
    }

    /// The OS error code (errno), 0 if none.
    ///
    /// See the type-level example.
    #[must_use]
    pub const fn code(&self) -> i32 {
        self.code
    }

    /// What kind of failure it is.
    ///
    /// See the type-level example.
    #[must_use]
    pub const fn kind(&self) -> BackendErrorKind {
        self.kind
    }
}

impl fmt::Display for BackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            BackendErrorKind::NoMemory => "out of memory or of mapping slots",
            BackendErrorKind::Unmappable => "this memory cannot be mapped by this backend",
            BackendErrorKind::BadRange => "the range is outside the aperture or overlaps a mapping",
            BackendErrorKind::Revoked => "the memory's exporter revoked it",
            BackendErrorKind::Other => "the backend refused",
        };
        write!(f, "{} failed (errno {}): {what}", self.op, self.code)
    }
}
impl core::error::Error for BackendError {}

/// Links the pieces of one reserved range in order: the fast path of a
/// mapper, which links one request segment after another. A backend that
/// has no faster way than one [`IommuBackend::map`] per link uses
/// [`MapEach`].
pub trait Linker {
    /// As [`IommuBackend::map`], with the permission given when the linker
    /// was made.
    ///
    /// # Safety
    /// As [`IommuBackend::map`].
    ///
    /// # Errors
    /// As [`IommuBackend::map`].
    unsafe fn link(
        &mut self,
        iova: u64,
        addr: u64,
        len: u64,
        mmio: bool,
    ) -> Result<(), BackendError>;
}

/// A [`Linker`] that calls [`IommuBackend::map`] for each link.
///
/// ```
/// use dmaspace::backend::{IommuBackend, Linker, MapEach};
/// use dmaspace::{dir::IommuPerm, iommu::SoftIommu};
/// let soft = SoftIommu::new(0, 1 << 20)?;
/// let mut each = MapEach::new(&soft, IommuPerm::READ);
/// // SAFETY: a software model; the range is this example's.
/// unsafe { each.link(0, 0x9000, 4096, false)? };
/// // SAFETY: as above.
/// unsafe { soft.sync(0, 4096) };
/// assert!(soft.translate(0, IommuPerm::READ).is_ok());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct MapEach<'a, B: IommuBackend> {
    backend: &'a B,
    perm: IommuPerm,
}

impl<'a, B: IommuBackend> MapEach<'a, B> {
    /// A linker over `backend` with `perm`.
    ///
    /// See the type-level example.
    #[must_use]
    pub fn new(backend: &'a B, perm: IommuPerm) -> Self {
        Self { backend, perm }
    }
}

impl<B: IommuBackend> Linker for MapEach<'_, B> {
    #[inline]
    unsafe fn link(
        &mut self,
        iova: u64,
        addr: u64,
        len: u64,
        mmio: bool,
    ) -> Result<(), BackendError> {
        // SAFETY: forwarded; the caller upholds `map`'s contract.
        unsafe { self.backend.map(iova, addr, len, self.perm, mmio) }
    }
}

/// An IOMMU the crate can program: a software model, a VFIO container, an
/// iommufd IOAS.
///
/// # Implementation safety
/// Memory safety of every device access rests on these:
/// - [`map`](Self::map) makes `[iova, iova + len)` translate, for the
///   devices attached to this backend, to `[addr, addr + len)` (of kind
///   [`MAPS`](Self::MAPS)) with exactly `perm`, and changes no other
///   translation. On error it leaves nothing of that call mapped.
/// - After [`unmap`](Self::unmap) returns, no device access to any IOVA in
///   the range reaches the memory that was mapped there (the IOTLB is
///   flushed); unmapping a range, or part of one, that holds no mapping is
///   not an error.
/// - [`granule`](Self::granule) is a constant power of two, at least 4 KiB;
///   [`aperture`](Self::aperture) is constant and lists only IOVAs the
///   hardware translates for attached devices.
/// - The methods may be called from several threads at once on disjoint
///   ranges (`Sync`).
/// - A [`Linker`] from [`linker`](Self::linker) behaves as `map` with the
///   given permission for each link.
pub unsafe trait IommuBackend: Sync {
    /// Which address of host memory [`map`](Self::map) takes.
    const MAPS: AddrKind;

    /// The linker of [`linker`](Self::linker) (`MapEach<'a, Self>` if the
    /// backend has no faster way).
    type Linker<'a>: Linker
    where
        Self: 'a;

    /// A linker for the links of one request, all with `perm`.
    fn linker(&self, perm: IommuPerm) -> Self::Linker<'_>;

    /// The translation granule in bytes.
    fn granule(&self) -> u64;

    /// The IOVA window `(base, len)` devices may use.
    fn aperture(&self) -> (u64, u64);

    /// Maps `len` bytes at `iova` to `addr` with `perm`; `mmio` marks
    /// memory of a device's BAR (P2P through the host bridge), which must
    /// not be cached or bounced. `iova`, `addr` and `len` are
    /// granule-aligned.
    ///
    /// # Safety
    /// The caller reserved `[iova, iova + len)` and nothing is mapped
    /// there, and the memory at `addr` may be accessed by the attached
    /// devices with `perm` until it unmaps the range.
    ///
    /// # Errors
    /// A [`BackendError`] from the hardware or the OS.
    unsafe fn map(
        &self,
        iova: u64,
        addr: u64,
        len: u64,
        perm: IommuPerm,
        mmio: bool,
    ) -> Result<(), BackendError>;

    /// Makes the maps of `[iova, iova + len)` visible to devices
    /// (`dma_iova_sync`). Backends whose maps are visible at once do nothing.
    ///
    /// # Safety
    /// The caller reserved `[iova, iova + len)`, and no other thread maps
    /// or unmaps inside it until this returns. (A backend may make an entry
    /// visible by reading it and writing it back: racing an unmap, that
    /// would bring back a mapping of memory already given back.)
    unsafe fn sync(&self, iova: u64, len: u64);

    /// [`map`](Self::map), then [`sync`](Self::sync) of the same range: the
    /// one link of a mapping that is synced as soon as it is linked (an
    /// owned buffer's). A backend may write the entries visible at once,
    /// in one pass; the result must be the same as the two calls'.
    ///
    /// # Safety
    /// As [`map`](Self::map).
    ///
    /// # Errors
    /// As [`map`](Self::map); nothing is mapped then.
    #[inline]
    unsafe fn map_synced(
        &self,
        iova: u64,
        addr: u64,
        len: u64,
        perm: IommuPerm,
        mmio: bool,
    ) -> Result<(), BackendError> {
        // SAFETY: forwarded; the caller upholds `map`'s contract.
        unsafe { self.map(iova, addr, len, perm, mmio) }?;
        // SAFETY: forwarded: the caller reserved the range and is the one
        // mapping there.
        unsafe { self.sync(iova, len) };
        Ok(())
    }

    /// Removes every translation inside `[iova, iova + len)` (granule-aligned).
    ///
    /// # Safety
    /// The caller reserved the range (it is not someone else's mapping).
    unsafe fn unmap(&self, iova: u64, len: u64);
}
