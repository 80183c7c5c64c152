//! dmaspace's seams, implemented on Linux VFIO and iommufd: the IOMMU
//! backends ([`vfio::VfioType1`], [`iommufd::IommufdIoas`]), peer memory in a
//! BAR of a function opened through VFIO ([`vfio_bar::VfioBarProvider`]), and
//! the direct mapper of VFIO's no-IOMMU mode ([`vfio_noiommu::no_iommu_mapper`]).

pub mod iommufd;
mod kernel;
pub mod vfio;
pub mod vfio_bar;
pub mod vfio_noiommu;
