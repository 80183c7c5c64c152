//! Re-attaching a device to another IOAS while a mapper of the old one
//! lives: the IOVAs it handed out would name nothing (or other memory) in
//! the new IOAS. The checked mapper borrows the VFIO device, and
//! `attach_ioas` takes it mutably.
use dmaspace::prelude::*;
use dmaspace_vfio::backend::iommufd::{IommufdIoas, iommufd_mapper};
use dmaspace_vfio::{Iommufd, Sysfs, VfioDevice};

brand!(Dom);
brand!(Nvme);

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let sysfs = Sysfs::live();
    let bdf = "0000:00:03.0".parse()?;
    let fd = Iommufd::open(&sysfs)?;
    let (ioas, other) = (fd.alloc_ioas()?, fd.alloc_ioas()?);
    let mut vfio = VfioDevice::open_cdev(&sysfs, bdf)?;
    vfio.bind_iommufd(&fd)?;
    vfio.attach_ioas(&ioas)?;
    let domain = IommuDomain::<Dom, _>::new(IommufdIoas::new(ioas)?)?;
    let machine = Machine::from_sysfs()?;
    let nvme = machine.device::<Nvme>(bdf, DmaLimits::BITS_64)?;
    let mapper = iommufd_mapper(&vfio, &nvme, &domain)?;
    vfio.attach_ioas(&other)?;
    drop(mapper);
    Ok(())
}
