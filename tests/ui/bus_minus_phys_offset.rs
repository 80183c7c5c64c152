//! The bus offset is not `bus - phys` of two arbitrary addresses: use `BusOffset::of_bar`.
#[path = "common/prelude.rs"]
mod prelude;
use prelude::*;

fn main() {
    let phys = PhysAddr::new(0x4000_0000);
    // SAFETY: not given to hardware.
    let bus = unsafe { BusAddr::new_unchecked(0) };
    let _offset = bus - phys;
}
