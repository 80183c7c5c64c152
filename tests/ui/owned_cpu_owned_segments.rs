//! A CPU-owned mapping gives out no device address: the CPU is using the bytes.
#[path = "common/prelude.rs"]
mod prelude;
use prelude::*;

fn main() {
    let (_, nic) = setup();
    let m = direct(&nic);
    let buf = ram().into_buffers(4096).pop().unwrap();
    let cpu = m.map_buf::<FromDevice, _>(buf).unwrap().sync_for_cpu();
    let _ = cpu.segments(nic.id());
}
