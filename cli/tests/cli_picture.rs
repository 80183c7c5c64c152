//! `dmaspace topology --format svg|png`: on every fixture (synthetic, captured from
//! Linux, the demo's reference server) the SVG parses, as XML and for the renderer, and
//! names every function and every P2P island that the JSON lists; the PNG is a PNG.

#[path = "../../pci/tests/common/mod.rs"]
pub mod common;

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;
use resvg::usvg::roxmltree;
use serde_json::Value;

fn dmaspace(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dmaspace"))
        .args(args)
        .output()
        .expect("run dmaspace")
}

fn ok(args: &[&str]) -> Vec<u8> {
    let out = dmaspace(args);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Every tree to draw, as the `--sysfs ROOT` or `--reference` arguments.
fn sources() -> Vec<Vec<String>> {
    let mut out: Vec<Vec<String>> = all_specs()
        .iter()
        .map(|s| vec!["--sysfs".into(), path_str(&fixture_root(s.name))])
        .collect();
    let kernel = Path::new(env!("CARGO_MANIFEST_DIR")).join("../pci/tests/fixtures/kernel");
    let mut names: Vec<PathBuf> = fs::read_dir(&kernel)
        .expect("kernel fixtures")
        .map(|e| e.expect("entry").path())
        .collect();
    names.sort();
    for dir in names {
        out.push(vec!["--sysfs".into(), path_str(&dir.join("root"))]);
    }
    out.push(vec!["--reference".into()]);
    out
}

fn path_str(p: &Path) -> String {
    p.to_str().expect("utf-8 path").to_string()
}

#[test]
fn svg_names_every_function_and_island_on_every_fixture() {
    for src in sources() {
        let src: Vec<&str> = src.iter().map(String::as_str).collect();
        let json: Value =
            serde_json::from_slice(&ok(
                &[&["topology", "--format", "json"][..], &src[..]].concat()
            ))
            .expect("json");
        let svg = String::from_utf8(ok(
            &[&["topology", "--format", "svg"][..], &src[..]].concat()
        ))
        .expect("utf-8 svg");
        let doc = roxmltree::Document::parse(&svg)
            .unwrap_or_else(|e| panic!("{src:?}: the SVG is not XML: {e}"));
        assert_eq!(doc.root_element().tag_name().name(), "svg");

        // Every function: a group with its BDF, whose title names it in full.
        let want: BTreeSet<String> = json["devices"]
            .as_array()
            .expect("devices")
            .iter()
            .map(|d| d["bdf"].as_str().expect("bdf").to_string())
            .collect();
        let mut got = BTreeSet::new();
        for g in doc.descendants().filter(|n| n.has_tag_name("g")) {
            let Some(bdf) = g.attribute("data-bdf") else {
                continue;
            };
            let title = g
                .children()
                .find(|c| c.has_tag_name("title"))
                .and_then(|t| t.text())
                .unwrap_or_default();
            assert!(title.contains(bdf), "{src:?}: title {title:?} of {bdf}");
            assert!(got.insert(bdf.to_string()), "{src:?}: {bdf} drawn twice");
        }
        assert_eq!(got, want, "{src:?}: every function, once");

        // Every island, in the JSON's order, with its members.
        let want: Vec<(String, String)> = json["islands"]
            .as_array()
            .expect("islands")
            .iter()
            .map(|i| {
                let members: Vec<&str> = i["members"]
                    .as_array()
                    .expect("members")
                    .iter()
                    .map(|m| m.as_str().expect("bdf"))
                    .collect();
                (
                    i["top"].as_str().expect("top").to_string(),
                    members.join(" "),
                )
            })
            .collect();
        let got: Vec<(String, String)> = doc
            .descendants()
            .filter(|n| n.attribute("class") == Some("island"))
            .map(|g| {
                let label = g
                    .descendants()
                    .filter_map(|t| t.text())
                    .any(|t| t.starts_with("P2P island "));
                assert!(label, "{src:?}: the island is labelled");
                (
                    g.attribute("data-top").expect("data-top").to_string(),
                    g.attribute("data-members").expect("members").to_string(),
                )
            })
            .collect();
        assert_eq!(got, want, "{src:?}: every island");

        // And the renderer takes it.
        resvg::usvg::Tree::from_str(&svg, &resvg::usvg::Options::default())
            .unwrap_or_else(|e| panic!("{src:?}: usvg: {e}"));
    }
}

#[test]
fn dgx_picture_marks_acs_redirect_and_vfs() {
    let root = path_str(&fixture_root("dgx"));
    let svg =
        String::from_utf8(ok(&["topology", "--sysfs", &root, "--format", "svg"])).expect("utf-8");
    let doc = roxmltree::Document::parse(&svg).expect("xml");
    let vfs = doc
        .descendants()
        .filter(|n| n.attribute("class") == Some("function vf"))
        .count();
    assert_eq!(vfs, 64);
    // Root ports, the fourth switch's downstream ports and one of the first's: red edges.
    let red = doc
        .descendants()
        .filter(|n| {
            n.attribute("class") == Some("function")
                && n.children()
                    .any(|r| r.has_tag_name("rect") && r.attribute("stroke") == Some("#c62828"))
        })
        .count();
    assert_eq!(red, 6 + 6 + 1);
    assert!(svg.contains("130 functions, 5 host bridges, 3 P2P islands"));
}

#[test]
fn png_renders_in_process() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = path_str(&fixture_root("q35"));
    let one = dir.path().join("one.png");
    let two = dir.path().join("two.png");
    for (path, scale) in [(&one, "1"), (&two, "2")] {
        ok(&[
            "topology",
            "--sysfs",
            &root,
            "--format",
            "png",
            "--scale",
            scale,
            "-o",
            &path_str(path),
        ]);
    }
    let size = |p: &Path| {
        let png = fs::read(p).expect("png");
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        let w = u32::from_be_bytes(png[16..20].try_into().expect("4 bytes"));
        let h = u32::from_be_bytes(png[20..24].try_into().expect("4 bytes"));
        (w, h)
    };
    let (w1, h1) = size(&one);
    let (w2, h2) = size(&two);
    assert!(w1 >= 900 && h1 >= 400, "{w1}x{h1}");
    assert_eq!((w2, h2), (2 * w1, 2 * h1));
    // To stdout, too.
    let png = ok(&["topology", "--sysfs", &root, "--format", "png"]);
    assert_eq!(&png[..4], b"\x89PNG");
    // A scale out of range, or a picture too large to hold, is bad input.
    for scale in ["0", "NaN", "9"] {
        let out = dmaspace(&[
            "topology", "--sysfs", &root, "--format", "png", "--scale", scale,
        ]);
        assert_eq!(out.status.code(), Some(2), "--scale {scale}");
    }
    let dgx = path_str(&fixture_root("dgx"));
    let out = dmaspace(&[
        "topology", "--sysfs", &dgx, "--format", "png", "--scale", "8",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("too large"));
}
