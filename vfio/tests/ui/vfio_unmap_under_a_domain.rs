//! A domain over a VFIO container hands out IOVAs it believes map its own
//! buffers. Unmapping under it through the container (then mapping other
//! memory there) would point a device address at memory it was never
//! granted: the raw container calls take `unsafe`.
use dmaspace::prelude::*;
use dmaspace_vfio::backend::vfio::VfioType1;

brand!(Dom);

fn unmap_under(domain: &IommuDomain<Dom, VfioType1>, iova: Iova<'_, Dom>) {
    let _ = domain.backend().container().unmap_dma(iova.as_u64(), 4096);
}

fn main() {}
