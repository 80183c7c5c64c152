//! A topology built by hand is data, not the machine: routes are classified on a `Machine` only.
#[path = "common/prelude.rs"]
mod prelude;
use prelude::*;

use dmaspace::pci::{PciFunction, Topology};

fn main() {
    let (cmb, nic) = setup();
    let topo = Topology::builder()
        .function(PciFunction::new(NVME_FN, 0x1b36, 0x0010))
        .function(PciFunction::new(NIC_FN, 0x1b36, 0x0010))
        .build()
        .unwrap();
    let _ = P2pRoute::classify(&topo, &cmb, &nic);
}
