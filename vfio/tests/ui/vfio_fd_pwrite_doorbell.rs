//! The device fd reaches every region: a `pwrite` at a BAR's region offset
//! rings a doorbell (starts DMA) without `MappedBar::write32`'s `unsafe`.
//! The raw fd takes `unsafe`.
use std::fs::File;
use std::os::unix::fs::FileExt;

use dmaspace_vfio::{Sysfs, VfioDevice};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dev = VfioDevice::open_cdev(&Sysfs::live(), "0000:00:03.0".parse()?)?;
    let bar0 = dev.region_info(0)?;
    let fd = dev.fd().try_clone_to_owned()?;
    File::from(fd).write_at(&1u32.to_le_bytes(), bar0.offset + 0x1000)?;
    Ok(())
}
