//! Device kinds are brands (declared with `brand!`), not any type.
#[path = "common/prelude.rs"]
mod prelude;
use prelude::*;

enum Handmade {}

fn main() {
    // SAFETY: never reaches hardware.
    let _ = unsafe { Device::<Handmade>::new_unchecked(Bdf::new(0, 1, 0, 0), DmaLimits::BITS_64) };
}
