//! Addresses of two spaces do not add.
#[path = "common/prelude.rs"]
mod prelude;
use prelude::*;

fn main() {
    let phys = PhysAddr::new(0x1000);
    // SAFETY: not given to hardware.
    let bus = unsafe { BusAddr::new_unchecked(0x1000) };
    let _ = phys + bus;
}
