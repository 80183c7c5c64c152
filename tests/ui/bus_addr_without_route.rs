//! Only a switch (bus-address) route mints bus addresses; a host-bridge route does not.
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
    let (cmb, nic) = setup();
    // SAFETY: test topology.
    let route = unsafe { Route::assume_via_host_bridge(&cmb, &nic, 6) };
    let a = cmb.alloc(4096).unwrap();
    let _bus = route.bus_addr(&a.seg());
}
