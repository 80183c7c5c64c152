//! P2P memory is never cache-synced: cache maintenance takes host segments only.
#[path = "common/prelude.rs"]
mod prelude;
use prelude::*;

use dmaspace::host::{CacheCoherent, CacheMaintenance};

fn main() {
    let (cmb, _) = setup();
    let a = cmb.alloc(4096).unwrap();
    CacheCoherent.sync_for_device::<ToDevice>(&a.seg());
}
