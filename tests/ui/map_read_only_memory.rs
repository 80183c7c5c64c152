//! Read-only memory (a literal, kernel text or rodata) never becomes a DMA
//! buffer: host pages are made from `&mut [u8]`.
#[path = "common/prelude.rs"]
mod prelude;
use prelude::*;
use dmaspace::host::HostPages;

static TABLE: [u8; 4096] = [0; 4096];

fn main() {
    // SAFETY: (would be) the CPU's mapping of that physical range.
    let _pages = unsafe { HostPages::new(&TABLE, PhysAddr::new(0x1000)) };
}
