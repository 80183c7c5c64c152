//! A CPU physical address does not become a bus address by conversion: only a bus-address route applies the bus offset.
#[path = "common/prelude.rs"]
mod prelude;
use prelude::*;

fn main() {
    let phys = PhysAddr::new(0x4000_1000);
    let _bus: BusAddr = phys.into();
}
