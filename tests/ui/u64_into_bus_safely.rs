//! A bare integer becomes a bus address only in `unsafe`.
#[path = "common/prelude.rs"]
mod prelude;
use prelude::*;

fn main() {
    let _bus = BusAddr::new_unchecked(0x1000);
}
