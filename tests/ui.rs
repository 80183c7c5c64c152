//! The wall: every misuse the crate rules out at compile time, one per
//! file in `tests/ui/`, with the error a driver author sees.

#[test]
fn compile_fail() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}
