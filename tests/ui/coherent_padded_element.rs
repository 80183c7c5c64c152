//! Coherent memory holds only plain-data elements: the device may leave any bytes there, and reads every byte written.
#[path = "common/prelude.rs"]
mod prelude;
use prelude::*;

fn main() {
    let (_, nic) = setup();
    let m = direct(&nic);
    let buf = ram().into_buffers(4096).pop().unwrap();
    let _ = m.map_coherent::<bool, _>(buf);
}
