//! One request holds memory of one P2P provider, never two.
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
use dmaspace::BvecP2p;

brand!(Gpu);

fn main() {
    let (cmb, _) = setup();
    // SAFETY: a test provider; nothing reaches hardware.
    let gpu = unsafe {
        Provider::<Gpu>::new(Bdf::new(0, 5, 0, 0), 0, PhysAddr::new(0x8000_0000), BusAddr::new_unchecked(0x8000_0000), 1 << 20)
    }
    .unwrap();
    let a = cmb.alloc(4096).unwrap();
    let b = gpu.alloc(4096).unwrap();
    let mut bv = BvecP2p::<Cmb>::new();
    bv.push(a.seg());
    bv.push(b.seg());
}
