//! Bytes never become a device-side address: no zerocopy `FromBytes` on them.
#[path = "common/prelude.rs"]
mod prelude;
use prelude::*;

use zerocopy::FromBytes;

fn main() {
    let raw = [0u8; 8];
    let _bus = BusAddr::read_from_bytes(&raw[..]);
}
