//! Copying back belongs to one bounce, not to the pool: there is no pool-wide `copy_back` that could copy another bounce's bytes.
#[path = "common/prelude.rs"]
mod prelude;
use prelude::*;

use dmaspace::swiotlb::Swiotlb;

fn main() {
    let mut low = ram();
    let mut high = ram();
    let pool = Swiotlb::new(low.pages().next().unwrap());
    let mut buf = high.pages().next().unwrap();
    pool.copy_back(&mut buf, 0).unwrap();
}
