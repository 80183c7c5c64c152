//! A route borrows the machine it was classified on: the topology cannot change while the route is used.
#[path = "common/prelude.rs"]
mod prelude;
use prelude::*;

use dmaspace::pci::{AcsState, PciFunction, Topology};

fn main() {
    let (a, b) = (Bdf::new(0, 0, 3, 0), Bdf::new(0, 0, 4, 0));
    let topo = Topology::builder()
        .function(PciFunction::new(a, 0x1b36, 0x0010))
        .function(PciFunction::new(b, 0x1b36, 0x0010))
        .build()
        .unwrap();
    // SAFETY: a simulated machine; nothing reaches hardware.
    let mut machine = unsafe { Machine::assume(topo) };
    // Provider and client from `setup()`, so that only the route borrows the machine.
    let (cmb, nic) = setup();
    let route = P2pRoute::classify(&machine, &cmb, &nic);
    // SAFETY: the simulated machine changed.
    unsafe { machine.topology_mut() }.set_acs(a, AcsState::Unknown).unwrap();
    let _ = route;
}
