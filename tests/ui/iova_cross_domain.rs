//! An IOVA range of one IOMMU domain cannot be linked in another.
#![expect(unused_imports, reason = "shared test prelude")]
use dmaspace::iommu::{IommuDomain, Pte};
use dmaspace::map::Mapper;
use dmaspace::vec::SegBuf;
use dmaspace::host::SimulatedRam;
use dmaspace::dir::*;
use dmaspace::Iova;



fn domain(table: &mut [Pte]) -> IommuDomain<'_, Dom> {
    // SAFETY: a software aperture.
    IommuDomain::new(unsafe { Iova::new_unchecked(0) }, table).unwrap()
}

fn ram() -> SimulatedRam {
    // SAFETY: simulated addresses.
    unsafe { SimulatedRam::new(PhysAddr::new(0x10_0000), 4) }
}
use dmaspace::brand;
use dmaspace::iommu::IommuPerm;
use dmaspace::PhysAddr;

brand!(Dom);
brand!(Other);

fn main() {
    let mut t1 = [Pte::EMPTY; 4];
    let mut t2 = [Pte::EMPTY; 4];
    let a = domain(&mut t1);
    // SAFETY: a software aperture.
    let b = IommuDomain::<Other>::new(unsafe { Iova::new_unchecked(0) }, &mut t2).unwrap();
    let mut range = a.alloc(4096).unwrap();
    let _ = b.link(&mut range, PhysAddr::new(0x1000), 4096, IommuPerm::READ);
}
