//! Closing the exporting device revokes its dma-buf exports for good: while
//! an export lives, the device cannot be dropped.
use dmaspace_vfio::{Sysfs, VfioDevice};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dev = VfioDevice::open_cdev(&Sysfs::live(), "0000:00:04.0".parse()?)?;
    let cmb = dev.export_dma_buf(2, 0, 1 << 20)?;
    drop(dev);
    println!("{}", cmb.len());
    Ok(())
}
