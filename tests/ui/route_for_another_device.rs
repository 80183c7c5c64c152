//! A route to one kind of device cannot map memory for another.
#[path = "common/prelude.rs"]
mod prelude;
use prelude::*;

fn main() {
    let (cmb, nic) = setup();
    let nvme = nvme();
    // SAFETY: test topology: one switch, no ACS.
    let to_nic: P2pRoute<'_, Cmb, Nic> = unsafe { Route::assume_bus_addr(&cmb, &nic, 4) }.into();
    let a = cmb.alloc(4096).unwrap();
    let m = direct(&nvme);
    let _ = m.map_bvec::<ToDevice, _, _>(&mut [a.seg().into_bvec_seg()], &to_nic, SegBuf::with_capacity(1), |v| v.unmap());
}
