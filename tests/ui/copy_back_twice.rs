//! A bounce is copied back once: `copy_back` consumes it.
#[path = "common/prelude.rs"]
mod prelude;
use prelude::*;

use dmaspace::swiotlb::Swiotlb;

fn main() {
    let mut low = ram();
    let mut high = ram();
    let mut pool = Swiotlb::new(low.pages().next().unwrap());
    let mut buf = high.pages().next().unwrap();
    let slot = pool.bounce(&buf, 0, 16).unwrap();
    slot.copy_back(&mut buf, 0).unwrap();
    slot.copy_back(&mut buf, 0).unwrap();
}
