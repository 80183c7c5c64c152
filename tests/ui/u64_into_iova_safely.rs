//! A bare integer becomes an IOVA only in `unsafe`.
#[path = "common/prelude.rs"]
mod prelude;
use prelude::*;

fn main() {
    let _iova = Iova::<Dom>::new_unchecked(0x1000);
}
