//! A mapped segment cannot be rewritten: its fields are private (no longer length, no other BAR).
#[path = "common/prelude.rs"]
mod prelude;
use prelude::*;

use dmaspace::vec::DmaSeg;

fn grow(seg: &mut DmaSeg<Nic, FromDevice>) {
    seg.raw.len = 1 << 20;
}

fn main() {}
