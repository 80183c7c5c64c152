//! The VFIO layer's part of the wall: misuses of the raw kernel handles that
//! do not compile, one per file in `tests/ui/`.

#[test]
fn compile_fail() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}
