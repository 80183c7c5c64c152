//! Host pages and P2P memory are different spaces: a PfnVec holds host pages only.
#[path = "common/prelude.rs"]
mod prelude;
use prelude::*;

use dmaspace::vec::PfnVec;

fn main() {
    let (cmb, _) = setup();
    let a = cmb.alloc(4096).unwrap();
    let mut pages = PfnVec::new();
    pages.push(a.seg());
}
