//! A BAR offset never goes on the wire: it is not a DMA address.
#[path = "common/prelude.rs"]
mod prelude;
use prelude::*;

fn write_prp(_wire: DmaAddr<'_, Nvme, ToDevice>) {}

fn main() {
    // SAFETY: an offset in the NVMe's own CMB.
    let offset = unsafe { BarOffset::<Nvme, ToDevice>::new_unchecked(0x1000) };
    write_prp(offset);
}
