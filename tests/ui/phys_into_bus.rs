//! A CPU physical address does not become a bus address by conversion: only a switch route applies the bus offset.
#![expect(unused_imports, reason = "shared test prelude")]
use dmaspace::device::Device;
use dmaspace::provider::Provider;
use dmaspace::route::Route;
use dmaspace::topology::Bdf;
use dmaspace::{brand, BusAddr, PhysAddr};

brand!(Cmb);
brand!(Nic);

fn setup() -> (Provider<Cmb>, Device<Nic>) {
    // SAFETY: a test provider; nothing reaches hardware.
    let p = unsafe {
        Provider::new(Bdf::new(0, 3, 0, 0), 2, PhysAddr::new(0x4000_0000), BusAddr::new_unchecked(0), 1 << 20)
    }
    .unwrap();
    (p, Device::new(Bdf::new(0, 4, 0, 0), u64::MAX).unwrap())
}

fn main() {
    let phys = PhysAddr::new(0x4000_1000);
    let _bus: BusAddr = phys.into();
}
