//! An owned mapping cannot take borrowed memory: leaking the mapping would end the borrow while the device still reaches it.
#[path = "common/prelude.rs"]
mod prelude;
use prelude::*;

fn main() {
    let (_, nic) = setup();
    let m = direct(&nic);
    let mut mem = ram();
    let page = mem.pages().next().unwrap();
    let _ = m.map_buf::<ToDevice, _>(page);
}
