//! "This topology is the machine" is a promise: trusting a hand-made topology takes `unsafe`.
#[path = "common/prelude.rs"]
mod prelude;
use prelude::*;

use dmaspace::pci::Topology;

fn main() {
    let topo = Topology::builder().build().unwrap();
    let _machine = Machine::assume(topo);
}
