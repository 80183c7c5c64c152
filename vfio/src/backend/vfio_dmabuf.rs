//! A BAR of a function this process drives through VFIO, published as P2P
//! memory *and* exported as a dma-buf: the peer path through iommufd that
//! Linux 6.19 opened (Linux 7.3.4 is what this crate is tested on).
//!
//! Linux 6.12's iommufd cannot map another device's BAR: `IOMMU_IOAS_MAP`
//! pins the process mapping, and a BAR's `mmap` is a PFNMAP range
//! (`EFAULT`, [`BackendErrorKind::Unmappable`]). From 6.19 VFIO exports a
//! BAR range as a dma-buf and iommufd maps the dma-buf with
//! `IOMMU_IOAS_MAP_FILE`. With a [`DmaBufBar`] imported into an IOAS
//! ([`Ioas::import`]), the iommufd backend maps the P2P segments of its
//! provider through the dma-buf, and nothing else changes for the driver: it
//! classifies the route ([`P2pRoute`]) and maps P2P segments as on type1.
//!
//! What the crate adds to the kernel here:
//! - **The route is checked.** iommufd maps the exporter's BAR whatever the
//!   kernel's P2PDMA rules say of the pair (they are not consulted on this
//!   path). The crate maps a P2P segment only by a [`P2pRoute`], which
//!   exists only where the rules allow the pair.
//! - **Revocation cannot be missed in safe code.** A reset, a close or a
//!   memory-decode change of the exporting device revokes the dma-buf, and
//!   the kernel then tears down every IOMMU mapping of it without telling
//!   userspace. Here the export borrows the exporting [`VfioDevice`]: a
//!   reset takes `&mut` ([`VfioDevice::reset`]), a close is a drop, a
//!   config write is `unsafe` ([`VfioDevice::config_write`]'s contract), and
//!   every mapping of the export borrows it through its P2P segments. What
//!   happens outside the process (another process resets the function
//!   through sysfs) is reported as [`VfioErrorKind::Revoked`] by
//!   [`DmaBufBar::check`] and as [`BackendErrorKind::Revoked`] by the next
//!   map; a transfer aimed at a revoked range is blocked by the IOMMU.
//!
//! [`BackendErrorKind::Unmappable`]: dmaspace::backend::BackendErrorKind::Unmappable
//! [`BackendErrorKind::Revoked`]: dmaspace::backend::BackendErrorKind::Revoked
//! [`P2pRoute`]: dmaspace::route::P2pRoute

use core::fmt;
use std::os::fd::AsFd;
use std::sync::Arc;

use super::vfio_bar::{VfioBarError, offset_in, publish};
#[cfg(doc)]
use crate::VfioErrorKind;
use crate::import::ExportRecord;
use crate::iommufd::ioas_map_file;
use crate::{Ioas, Iommufd, MappedBar, VfioDevice, VfioError, page_size};
use dmaspace::Brand;
use dmaspace::PhysAddr;
use dmaspace::machine::Machine;
use dmaspace::provider::Provider;

/// BAR `bar` of a VFIO-opened function as P2P memory, with VFIO's `mmap` of
/// the whole BAR (the provider's recorded CPU mapping, for the CPU's reads)
/// and the BAR exported as a dma-buf (what iommufd maps).
///
/// # Invariants
/// - `provider` describes BAR `bar` of `device` as the machine recorded it,
///   and VFIO's region and the BAR register agree with it (as
///   [`VfioBarProvider`](super::vfio_bar::VfioBarProvider));
/// - `record.bar` is VFIO's `mmap` of the whole BAR, the provider's CPU
///   mapping; `record.dmabuf` is the dma-buf of the whole BAR, offset 0.
///
/// Fields drop in order: the provider before the record (whose mapping it
/// records). The value borrows `device` for `'d`: the exporting device can
/// be neither reset nor closed while the export, or any mapping of its
/// memory, lives.
///
/// ```no_run
/// use dmaspace::prelude::*;
/// use dmaspace_vfio::backend::vfio_dmabuf::DmaBufBar;
/// use dmaspace_vfio::{Iommufd, Sysfs, VfioDevice};
/// brand!(Cmb);
/// let sysfs = Sysfs::live();
/// let fd = Iommufd::open(&sysfs)?;
/// let ioas = fd.alloc_ioas()?;
/// let mut b = VfioDevice::open_cdev(&sysfs, "0000:00:04.0".parse()?)?;
/// b.bind_iommufd(&fd)?;
/// b.attach_ioas(&ioas)?;
/// let machine = Machine::from_sysfs()?;
/// // SAFETY: B's BAR2 is its NVMe CMB, plain memory nobody else uses.
/// let cmb = unsafe { DmaBufBar::<Cmb>::new(&machine, &b, 2) }?;
/// ioas.import(&cmb);
/// // b.reset()?;  // does not compile: the export borrows `b`
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct DmaBufBar<'d, PB: Brand> {
    provider: Provider<PB>,
    record: Arc<ExportRecord>,
    device: &'d VfioDevice,
}

impl<'d, PB: Brand> DmaBufBar<'d, PB> {
    /// Publishes BAR `bar` of `device` (opened through VFIO by this process,
    /// its cdev bound to an iommufd) as P2P memory of `machine`, the host's
    /// topology, and exports the whole BAR as a dma-buf.
    ///
    /// Checked here: as [`VfioBarProvider::new`](super::vfio_bar::VfioBarProvider::new),
    /// then the export.
    ///
    /// # Safety
    /// As [`VfioBarProvider::new`](super::vfio_bar::VfioBarProvider::new):
    /// BAR `bar` must be memory the device serves as plain memory, and
    /// nothing else may use it while the value lives, nor afterwards while a
    /// mapping of it may still be live.
    ///
    /// # Errors
    /// As [`VfioBarProvider::new`](super::vfio_bar::VfioBarProvider::new);
    /// [`VfioBarError::Vfio`] when the export fails (`ENOTTY`/`EINVAL`: a
    /// kernel before 6.19, or `CONFIG_VFIO_PCI_DMABUF` off).
    pub unsafe fn new(
        machine: &Machine,
        device: &'d VfioDevice,
        bar: u8,
    ) -> Result<Self, VfioBarError> {
        // SAFETY: forwarded from this function's contract; the mapping moves
        // into the record, which drops after the provider.
        let (provider, mapped) = unsafe { publish::<PB>(machine, device, bar) }?;
        let export = device.export_dma_buf(u32::from(bar), 0, provider.size())?;
        // INVARIANT: `publish` checked the provider against VFIO's region and
        // the BAR register and recorded `mapped`, the whole BAR, as its CPU
        // mapping; the dma-buf is the whole BAR from offset 0.
        Ok(Self {
            provider,
            record: Arc::new(ExportRecord {
                dmabuf: export.into_fd(),
                bar: mapped,
                device: device.address(),
            }),
            device,
        })
    }

    /// The provider: allocate P2P memory from it, classify routes to it.
    #[must_use]
    pub fn provider(&self) -> &Provider<PB> {
        &self.provider
    }

    /// The exporting device.
    #[must_use]
    pub fn device(&self) -> &'d VfioDevice {
        self.device
    }

    /// The process mapping of the BAR, for the CPU's reads (and, `unsafe`,
    /// writes).
    #[must_use]
    pub fn bar(&self) -> &MappedBar {
        &self.record.bar
    }

    /// Where the byte of this BAR at CPU physical address `phys` lies in
    /// [`bar`](Self::bar); `None` outside the BAR.
    #[must_use]
    pub fn bar_offset(&self, phys: PhysAddr) -> Option<usize> {
        offset_in(&self.provider, phys)
    }

    /// Whether the export is revoked *now*: maps its first page into a
    /// scratch IOAS of `iommufd` (no device attached) and unmaps it.
    ///
    /// A revocation the crate cannot prevent (another process resets the
    /// function, a hot unplug) shows here and in the next map. One that was
    /// undone before the check (decoding off, then on again) does not: the
    /// kernel keeps no trace userspace can read, though it tore down every
    /// mapping made before it. See `docs/p2p-paths.md`.
    ///
    /// # Errors
    /// [`VfioErrorKind::Revoked`] if it is; the errno of the scratch IOAS's
    /// calls otherwise.
    pub fn check(&self, iommufd: &Iommufd) -> Result<(), VfioError> {
        let scratch = iommufd.alloc_ioas()?;
        let page = page_size() as u64;
        let (ranges, _) = scratch.iova_ranges()?;
        let iova = ranges
            .iter()
            .find_map(|&(first, last)| {
                let at = first.checked_next_multiple_of(page)?;
                (at.checked_add(page - 1)? <= last).then_some(at)
            })
            .ok_or(VfioError::invalid("the scratch IOAS allows no IOVA"))?;
        ioas_map_file(
            iommufd.raw_fd(),
            scratch.id(),
            self.record.dmabuf.as_fd(),
            (0, page, iova),
            true,
            false,
        )?;
        // SAFETY: the scratch IOAS is this function's, no device is attached
        // to it and no domain manages it.
        unsafe { scratch.unmap(iova, page) }.map(drop)
    }
}

impl<PB: Brand> fmt::Debug for DmaBufBar<'_, PB> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DmaBufBar")
            .field("provider", &self.provider)
            .field("export", &self.record)
            .finish()
    }
}

impl Ioas {
    /// Imports `bar`'s dma-buf: from now on, while `bar` lives, a map of a
    /// virtual range inside its BAR's `mmap` (a P2P segment of its provider,
    /// mapped by the [`IommufdIoas`](super::iommufd::IommufdIoas) backend
    /// over this IOAS) is an `IOMMU_IOAS_MAP_FILE` of the same bytes of the
    /// dma-buf, where `IOMMU_IOAS_MAP` would fail (`EFAULT`). Importing
    /// twice is importing once.
    ///
    /// Safe: the dma-buf and the `mmap` are the same BAR bytes, so no
    /// translation changes target; the import holds the `mmap` while it
    /// names it, so no other memory can take those addresses.
    ///
    /// See [`DmaBufBar`]'s example.
    pub fn import<PB: Brand>(&self, bar: &DmaBufBar<'_, PB>) {
        self.imports().add(&bar.record);
    }
}
