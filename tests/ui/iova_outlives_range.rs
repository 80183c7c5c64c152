//! A typed IOVA borrows the range it names: it cannot be kept past the
//! free, after which the domain hands the same address to another mapping.
#[path = "common/prelude.rs"]
mod prelude;
use prelude::*;

fn program_device(_iova: Iova<'_, Dom>) {}

fn main() {
    let dom = domain();
    let range = dom.alloc(4096).unwrap();
    let iova = range.start();
    drop(range);
    let _other = dom.alloc(4096).unwrap(); // the same IOVA, someone else's memory
    program_device(iova);
}
