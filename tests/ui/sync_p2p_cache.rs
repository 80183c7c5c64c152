//! P2P memory is never cache-synced: cache maintenance takes host segments only.
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
use dmaspace::dir::ToDevice;
use dmaspace::host::{CacheMaintenance, Coherent};

fn main() {
    let (cmb, _) = setup();
    let a = cmb.alloc(4096).unwrap();
    Coherent.sync_for_device::<ToDevice>(&a.seg());
}
