//! A bare integer becomes an IOVA only in `unsafe`.
use dmaspace::Iova;

fn main() {
    let _iova = Iova::new_unchecked(0x1000);
}
