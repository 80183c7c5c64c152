//! A peer's BAR published for iommufd (`DmaBufBar`) and a P2P segment of it:
//! resetting the exporting device would silently kill every mapping of the
//! segment, so it does not compile while the segment (and so any mapping of
//! it) lives.
use dmaspace::prelude::*;
use dmaspace_vfio::backend::vfio_dmabuf::DmaBufBar;
use dmaspace_vfio::{Sysfs, VfioDevice};

brand!(Cmb);

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let machine = Machine::from_sysfs()?;
    let mut b = VfioDevice::open_cdev(&Sysfs::live(), "0000:00:04.0".parse()?)?;
    // SAFETY: B's BAR2 is its NVMe CMB, plain memory nobody else uses.
    let cmb = unsafe { DmaBufBar::<Cmb>::new(&machine, &b, 2) }?;
    let peer = cmb.provider().alloc(4096)?;
    b.reset()?;
    println!("{:?}", peer.seg());
    Ok(())
}
