//! A mapper, and every mapping it makes, cannot outlive its IOMMU domain.
#[path = "common/prelude.rs"]
mod prelude;
use prelude::*;

fn main() {
    let (_, nic) = setup();
    let mut mem = ram();
    let mut page = mem.pages().next().unwrap();
    let m;
    {
        let dom = domain();
        m = Mapper::iommu(&nic, &dom).unwrap();
    }
    let _ = m.map_host::<ToDevice, _>(&mut [page.dma()], SegBuf::with_capacity(1), |v| v.unmap());
}
