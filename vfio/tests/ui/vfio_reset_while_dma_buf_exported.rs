//! A reset revokes the device's dma-buf exports, and the kernel then tears
//! their IOMMU mappings down without a word: while an export of the device
//! lives, the device cannot be reset.
use dmaspace_vfio::{Sysfs, VfioDevice};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut dev = VfioDevice::open_cdev(&Sysfs::live(), "0000:00:04.0".parse()?)?;
    let cmb = dev.export_dma_buf(2, 0, 1 << 20)?;
    dev.reset()?;
    drop(cmb);
    Ok(())
}
