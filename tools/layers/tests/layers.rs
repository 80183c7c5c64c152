//! Every crate of the workspace is layered: no import cycle between sibling
//! modules (see the crate docs for the rule).

use std::path::Path;

fn check(krate: &str) -> usize {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(krate);
    let graph = dmaspace_layers::read_crate(&src).unwrap_or_else(|e| panic!("{e}"));
    let cycles = graph.cycles();
    let report: Vec<String> = cycles
        .iter()
        .map(|c| {
            c.iter()
                .map(|e| {
                    format!(
                        "{} -> {} ({})",
                        e.from.join("::"),
                        e.to.join("::"),
                        e.witness
                    )
                })
                .collect::<Vec<_>>()
                .join("\n    ")
        })
        .collect();
    assert!(
        cycles.is_empty(),
        "{krate}: import cycles:\n  {}",
        report.join("\n  ")
    );
    graph.edges.len()
}

#[test]
fn the_pci_crate_is_layered() {
    assert!(check("pci/src") > 10);
}

#[test]
fn the_core_crate_is_layered() {
    assert!(check("src") > 30);
}

#[test]
fn the_vfio_crate_is_layered() {
    assert!(check("vfio/src") > 10);
}

#[test]
fn the_cli_is_layered() {
    assert!(check("cli/src") > 5);
}

/// The checker itself: a cycle is found, with its witnesses, and an edge to
/// an ancestor or a `#[cfg(test)]` item is not one.
#[test]
fn a_cycle_is_found_and_tests_and_ancestors_do_not_count() {
    let dir = tempfile::tempdir().unwrap();
    let w = |p: &str, t: &str| {
        let f = dir.path().join(p);
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::fs::write(f, t).unwrap();
    };
    w("lib.rs", "mod a; mod b; mod c; pub use a::A;");
    w(
        "a.rs",
        "pub struct A; #[cfg(test)] mod tests { use crate::b::B; }",
    );
    w("b.rs", "pub struct B(crate::A); mod inner;");
    w(
        "b/inner.rs",
        "use super::super::{c::{self, C}}; use super::B;",
    );
    w("c.rs", "pub struct C; fn f() { let _ = crate::b::B; }");
    let g = dmaspace_layers::read_crate(dir.path()).unwrap();
    let edges: Vec<(String, String)> = g
        .edges
        .keys()
        .map(|(f, t)| (f.join("::"), t.join("::")))
        .collect();
    assert_eq!(
        edges,
        [
            ("b".into(), "a".into()),
            ("b".into(), "c".into()),
            ("c".into(), "b".into())
        ]
    );
    let cycles = g.cycles();
    assert_eq!(cycles.len(), 1, "{cycles:?}");
    assert!(
        cycles[0]
            .iter()
            .any(|e| e.witness.ends_with("b/inner.rs: super::super::c"))
    );
}
