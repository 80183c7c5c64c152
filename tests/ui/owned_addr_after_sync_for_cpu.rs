//! Handing an owned mapping to the CPU ends every device address taken from it.
#[path = "common/prelude.rs"]
mod prelude;
use prelude::*;

fn main() {
    let (_, nic) = setup();
    let m = direct(&nic);
    let buf = ram().into_buffers(4096).pop().unwrap();
    let mapped = m.map_buf::<FromDevice, _>(buf).unwrap();
    let addr = mapped.segments(nic.id()).unwrap()[0].addr();
    let _cpu = mapped.sync_for_cpu();
    let _ = addr;
}
