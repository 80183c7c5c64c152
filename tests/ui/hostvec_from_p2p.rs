//! Host pages and P2P memory are different spaces: a HostVec holds host pages only.
#[path = "common/prelude.rs"]
mod prelude;
use prelude::*;

use dmaspace::vec::HostVec;

fn main() {
    let (cmb, _) = setup();
    let a = cmb.alloc(4096).unwrap();
    let mut pages = HostVec::new();
    pages.push(a.seg());
}
