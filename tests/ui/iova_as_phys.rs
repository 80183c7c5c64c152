//! An IOVA is not a physical address.
use dmaspace::{Iova, PhysAddr};

fn cpu_side(_p: PhysAddr) {}

fn main() {
    // SAFETY: not given to hardware.
    let iova = unsafe { Iova::new_unchecked(0x1000) };
    cpu_side(iova);
}
