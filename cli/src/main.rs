//! The `dmaspace` command.
fn main() {}
