//! P2P memory is never bounced through swiotlb.
#[path = "common/prelude.rs"]
mod prelude;
use prelude::*;

use dmaspace::swiotlb::Swiotlb;

fn main() {
    let (cmb, _) = setup();
    let mut mem = ram();
    let mut pool = Swiotlb::new(mem.pages().next().unwrap());
    let a = cmb.alloc(4096).unwrap();
    let _ = pool.bounce(&a, 0, 4096);
}
