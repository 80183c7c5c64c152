//! A config write can move a BAR a provider recorded (its P2P mappings
//! then name other MMIO) or switch bus mastering on: it takes `unsafe`.
use dmaspace_vfio::{Sysfs, VfioDevice};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dev = VfioDevice::open_cdev(&Sysfs::live(), "0000:00:03.0".parse()?)?;
    dev.config_write(0x18, &0xfe00_0000u32.to_le_bytes())?;
    Ok(())
}
