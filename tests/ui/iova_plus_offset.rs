//! An IOVA has no arithmetic: another IOVA is a grant nobody made.
#[path = "common/prelude.rs"]
mod prelude;
use prelude::*;

fn main() {
    let mut table = [Pte::EMPTY; 4];
    let dom = domain(&mut table);
    let range = dom.alloc(4096).unwrap();
    let _beyond = range.start() + 0x1000;
}
