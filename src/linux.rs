//! Linux VFIO and iommufd, the low level (feature `vfio`, Linux only).
//!
//! What a userspace driver needs from the kernel to do DMA, with raw `u64`
//! IOVAs and physical addresses (the typed layer sits above this and does not
//! depend on it, nor this on it):
//!
//! | backend | open | DMA address of host memory |
//! |---|---|---|
//! | VFIO type1 | [`Container`] + [`Group`] (`/dev/vfio/vfio`, `/dev/vfio/N`) | an IOVA: [`Container::map_dma`] maps a process virtual address |
//! | iommufd | [`Iommufd`] + [`Ioas`] + [`Device::open_cdev`] (`/dev/iommu`, `/dev/vfio/devices/vfioN`) | an IOVA: [`Ioas::map`] |
//! | no-IOMMU | [`Container`] with [`IommuType::NoIommu`] + `/dev/vfio/noiommu-N` | the physical address: [`DmaMemory::phys_addr`] |
//!
//! Host memory is [`DmaMemory`]: page-aligned, populated and locked. A device's
//! BARs are mapped with [`Device::map_bar`]; register reads are safe, register
//! writes are `unsafe` because a write can start DMA ([`Bar::write32`]).
//!
//! Every failure is an [`Error`]: the [`Call`] that failed and an
//! [`ErrorKind`] — an errno with what it means for that call, or a typed fact
//! found before any call (no such device, bound to another driver, group not
//! viable, iommufd cannot map a PFNMAP BAR, ...). Nothing here panics on
//! kernel input.
//!
//! The uapi structs are written from Linux 6.12's headers (sizes asserted at
//! compile time): Debian 12's system headers are 6.1 and lack the cdev and
//! iommufd parts.
#![cfg(target_os = "linux")]

mod container;
mod device;
mod error;
mod iommufd;
mod mem;
mod sys;
mod sysfs;

pub use container::{Container, Group, GroupStatus, IommuType};
pub use device::{Bar, Device, DeviceInfo, RegionInfo};
pub use error::{Call, Error, ErrorKind, Ioctl, Result, errno_name};
pub use iommufd::{Ioas, Iommufd};
pub use mem::{DmaMemory, page_size, phys_addr_of};
pub use sysfs::{GroupNode, PciAddress, Sysfs};
