//! Only a bus-address route mints bus addresses; a host-bridge route does not.
#[path = "common/prelude.rs"]
mod prelude;
use prelude::*;

fn main() {
    let (cmb, nic) = setup();
    // SAFETY: test topology.
    let route = unsafe { Route::assume_host_bridge(&cmb, &nic, 6) };
    let a = cmb.alloc(4096).unwrap();
    let _bus = route.bus_addr(&a.seg());
}
