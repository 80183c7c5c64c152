//! One request holds memory of one P2P provider, never two.
#[path = "common/prelude.rs"]
mod prelude;
use prelude::*;

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
