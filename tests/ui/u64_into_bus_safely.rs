//! A bare integer becomes a bus address only in `unsafe`.
use dmaspace::BusAddr;

fn main() {
    let _bus = BusAddr::new_unchecked(0x1000);
}
