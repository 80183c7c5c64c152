//! Brands are declared with `brand!`, so each is bound to one live object.
use dmaspace::device::Device;
use dmaspace::topology::Bdf;

enum Handmade {}

fn main() {
    let _ = Device::<Handmade>::new(Bdf::new(0, 1, 0, 0), u64::MAX);
}
