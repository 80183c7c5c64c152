//! The bus address of an own-BAR segment (a CMB's PRP entry) cannot outlive the mapping it came from.
#[path = "common/prelude.rs"]
mod prelude;
use prelude::*;

fn main() {
    let (cmb, _) = setup();
    let nvme = nvme();
    let sq = cmb.alloc(4096).unwrap();
    let route: P2pRoute<'_, Cmb, Nvme> = Route::same_device(&cmb, &nvme).unwrap().into();
    let m = direct(&nvme);
    let mut stale = None;
    m.map_bvec::<ToDevice, _, _>(&mut [sq.seg().into_bvec_seg()], &route, SegBuf::with_capacity(1), |v| {
        let v = v.sync();
        let seg = &v.segments(nvme.id()).unwrap()[0];
        stale = route.own_bar_bus_addr(&v, seg).ok();
    })
    .unwrap();
    let _ = stale;
}
