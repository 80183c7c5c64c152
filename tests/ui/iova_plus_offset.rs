//! An IOVA has no arithmetic: another IOVA is a grant nobody made.
#[path = "common/prelude.rs"]
mod prelude;
use prelude::*;

fn main() {
    let dom = domain();
    let range = dom.alloc(4096).unwrap();
    let _beyond = range.start() + 0x1000;
}
