//! Bytes never become a device-side address: no zerocopy `FromBytes` on them.
use dmaspace::BusAddr;
use zerocopy::FromBytes;

fn main() {
    let raw = [0u8; 8];
    let _bus = BusAddr::read_from_bytes(&raw[..]);
}
