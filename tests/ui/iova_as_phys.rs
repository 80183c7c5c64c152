//! An IOVA is not a physical address.
#[path = "common/prelude.rs"]
mod prelude;
use prelude::*;

fn cpu_side(_p: PhysAddr) {}

fn main() {
    // SAFETY: not given to hardware.
    let iova = unsafe { Iova::<Dom>::new_unchecked(0x1000) };
    cpu_side(iova);
}
