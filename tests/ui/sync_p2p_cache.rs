//! P2P memory is never cache-synced: cache maintenance takes host segments only.
#[path = "common/prelude.rs"]
mod prelude;
use prelude::*;
use dmaspace::dir::ToDevice;
use dmaspace::host::{CacheMaintenance, Coherent};

fn main() {
    let (cmb, _) = setup();
    let a = cmb.alloc(4096).unwrap();
    Coherent.sync_for_device::<ToDevice>(&a.seg());
}
