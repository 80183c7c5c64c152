//! A mapper over a VFIO domain for a device that is not in the domain's
//! container: its IOVAs name nothing (or another process's memory) in the
//! IOMMU context the device really uses. Nothing proves the attachment, so
//! `Mapper::iommu` does not take a VFIO backend: the checked constructor
//! (`dmaspace_vfio::backend::vfio::type1_mapper`) or `unsafe` does.
use dmaspace::prelude::*;
use dmaspace_vfio::backend::vfio::VfioType1;

brand!(Dom);
brand!(Nvme);

fn map_for(nvme: &Device<'_, Nvme>, domain: &IommuDomain<Dom, VfioType1>) {
    let _mapper = Mapper::iommu(nvme, domain);
}

fn main() {}
