//! dmaspace's seams, implemented on Linux VFIO and iommufd: the IOMMU
//! backends ([`vfio::VfioType1`], [`iommufd::IommufdIoas`]), peer memory in a
//! BAR of a function opened through VFIO ([`vfio_bar::VfioBarProvider`]; for
//! iommufd on Linux 6.19 and later, exported as a dma-buf:
//! [`vfio_dmabuf::DmaBufBar`]), and
//! the direct mapper of VFIO's no-IOMMU mode ([`vfio_noiommu::no_iommu_mapper`]),
//! and the mappers over the two IOMMU backends that check the device is
//! attached to the domain's container or IOAS ([`vfio::type1_mapper`],
//! [`iommufd::iommufd_mapper`]; `dmaspace`'s `Mapper::iommu` does not take a
//! VFIO backend).

mod attach;
mod ctx;
pub mod iommufd;
mod kernel;
#[cfg(feature = "vfio-ioctls")]
#[cfg_attr(docsrs, doc(cfg(feature = "vfio-ioctls")))]
pub mod rust_vmm;
pub mod vfio;
pub mod vfio_bar;
pub mod vfio_dmabuf;
pub mod vfio_noiommu;

pub use attach::AttachError;
pub use ctx::{IommuHandle, VfioIommu};
