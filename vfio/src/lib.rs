//! Linux VFIO and iommufd for `dmaspace`: the low level (containers, groups,
//! device cdevs, IOAS, pinned memory) and, in [`backend`], the IOMMU backends,
//! the BAR provider and the no-IOMMU mapper built on it. Linux only.
//!
//! What a userspace driver needs from the kernel to do DMA, with raw `u64`
//! IOVAs and physical addresses (the typed layer sits above this and does not
//! depend on it, nor this on it):
//!
//! | backend | open | DMA address of host memory |
//! |---|---|---|
//! | VFIO type1 | [`VfioContainer`] + [`VfioGroup`] (`/dev/vfio/vfio`, `/dev/vfio/N`) | an IOVA: [`VfioContainer::map_dma`] maps a process virtual address |
//! | iommufd | [`Iommufd`] + [`Ioas`] + [`VfioDevice::open_cdev`] (`/dev/iommu`, `/dev/vfio/devices/vfioN`) | an IOVA: [`Ioas::map`] |
//! | no-IOMMU | [`VfioContainer`] with [`VfioIommuType::NoIommu`] + `/dev/vfio/noiommu-N` | the physical address: [`PinnedMemory::phys_addr`] |
//!
//! Host memory is [`PinnedMemory`]: page-aligned, populated and locked. A device's
//! BARs are mapped with [`VfioDevice::map_bar`]; register reads are safe, register
//! writes are `unsafe` because a write can start DMA ([`MappedBar::write32`]).
//!
//! Every failure is an [`VfioError`]: the [`VfioCall`] that failed and an
//! [`VfioErrorKind`] — an errno with what it means for that call, or a typed fact
//! found before any call (no such device, bound to another driver, group not
//! viable, iommufd cannot map a PFNMAP BAR, ...). Nothing here panics on
//! kernel input.
//!
//! The uapi structs and constants are rust-vmm's `vfio-bindings` and
//! `iommufd-bindings` (bindgen output of recent headers, valid on 6.12 and
//! later: the kernel checks sizes against its own minimum); the system calls
//! go through `libc`.
// Feature labels on items in docs.rs's build.
#![cfg_attr(docsrs, feature(doc_cfg))]
// Strict where it helps a library (as zerocopy): every public item reachable,
// nothing printed without Debug, core before std, no silent truncation. (A
// std crate: `alloc` is not linked, so std's collections stay.)
#![cfg_attr(
    not(test),
    warn(
        unreachable_pub,
        missing_debug_implementations,
        clippy::std_instead_of_core,
        clippy::cast_possible_truncation
    )
)]
#![cfg(target_os = "linux")]

pub mod backend;

mod container;
mod device;
mod dmabuf;
mod error;
mod import;
mod iommufd;
mod mem;
mod sys;
mod sysfs;

pub use container::{VfioContainer, VfioGroup, VfioGroupStatus, VfioIommuInfo, VfioIommuType};
pub use device::{MappedBar, VfioDevice, VfioDeviceInfo, VfioRegionInfo};
pub use dmabuf::DmaBuf;
pub use error::{Ioctl, VfioCall, VfioError, VfioErrorKind, errno_name};
pub use iommufd::{Ioas, Iommufd};
pub use mem::{PinnedMemory, page_size, phys_addr_of};
pub use sysfs::{Sysfs, VfioGroupNode};
