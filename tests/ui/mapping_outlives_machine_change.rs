//! While a mapping made with a classified route lives, the machine cannot change (ACS switched on would reroute its bus addresses).
#[path = "common/prelude.rs"]
mod prelude;
use prelude::*;

use dmaspace::pci::{AcsCtrl, AcsState, PciFunction, Topology};

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
    let route = P2pRoute::classify(&machine, &cmb, &nic).unwrap();
    let mem = cmb.alloc(4096).unwrap();
    let m = direct(&nic);
    let _ = m.map_bvec::<ToDevice, _, _>(&mut [mem.seg().into_bvec_seg()], &route, SegBuf::with_capacity(1), |v| {
        // SAFETY: the simulated machine changed.
        unsafe { machine.topology_mut() }.set_acs(a, AcsState::Control(AcsCtrl::RR)).unwrap();
        v.unmap();
    });
}
