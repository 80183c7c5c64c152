//! `dmaspace explain PROVIDER CLIENT`: the same verdict as `dmaspace topology` on every
//! pair of every synthetic fixture (a sample of the 130-function one), and as Linux 6.12
//! on a sample of the captured pairs; the steps and the nearest fix in words; bad input
//! is exit 2 with one line.

#[path = "../../pci/tests/common/mod.rs"]
pub mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::{Command, Output};
use std::thread;

use common::*;
use serde_json::Value;

fn dmaspace(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dmaspace"))
        .args(args)
        .output()
        .expect("run dmaspace")
}

fn json(args: &[&str]) -> Value {
    let out = dmaspace(args);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("one JSON object")
}

const SAME: [&str; 7] = [
    "map_type",
    "distance",
    "hops",
    "acs",
    "common_upstream",
    "acs_redirect_at",
    "unknown_at",
];

/// Runs `explain --format json` for every pair, two at a time, and returns the answers.
fn explain_all(root: &str, allowlist: &str, pairs: &[(String, String)]) -> Vec<Value> {
    let chunks: Vec<&[(String, String)]> = pairs.chunks(pairs.len().div_ceil(2).max(1)).collect();
    thread::scope(|s| {
        let handles: Vec<_> = chunks
            .iter()
            .map(|chunk| {
                s.spawn(move || {
                    chunk
                        .iter()
                        .map(|(p, c)| {
                            json(&[
                                "explain", p, c, "--sysfs", root, "--kernel", allowlist,
                                "--format", "json",
                            ])
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("thread"))
            .collect()
    })
}

#[test]
fn explain_agrees_with_topology_on_every_pair_of_every_fixture() {
    let mut checked = 0;
    for spec in all_specs() {
        let root = fixture_root(spec.name);
        let root = root.to_str().expect("utf-8");
        let allowlist = if spec.name.starts_with("google") {
            "6.12" // where the two lists differ
        } else {
            "7.3"
        };
        let doc = json(&[
            "topology", "--sysfs", root, "--format", "json", "--kernel", allowlist,
        ]);
        let table: BTreeMap<(String, String), Value> = doc["pairs"]
            .as_array()
            .expect("pairs")
            .iter()
            .map(|e| {
                let k = (
                    e["provider"].as_str().expect("p").to_string(),
                    e["client"].as_str().expect("c").to_string(),
                );
                (k, e.clone())
            })
            .collect();
        // The 130-function fixture: every 97th pair (all 16,900 would take minutes).
        let step = if table.len() > 1000 { 97 } else { 1 };
        let pairs: Vec<(String, String)> = table.keys().step_by(step).cloned().collect();
        for (pair, e) in pairs.iter().zip(explain_all(root, allowlist, &pairs)) {
            let t = &table[pair];
            for k in SAME {
                assert_eq!(e[k], t[k], "{}: {} -> {}: {k}", spec.name, pair.0, pair.1);
            }
            let last = e["steps"].as_array().and_then(|s| s.last()).expect("steps");
            assert_eq!(last["step"], "outcome");
            assert_eq!(last["map_type"], t["map_type"]);
            checked += 1;
        }
    }
    assert!(checked >= 1800, "{checked}");
}

#[test]
fn explain_agrees_with_linux_on_captured_pairs() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../pci/tests/fixtures/kernel");
    let mut names: Vec<_> = fs::read_dir(&dir)
        .expect("kernel fixtures")
        .map(|e| e.expect("entry").path())
        .collect();
    names.sort();
    let mut checked = 0;
    for base in names {
        let root = base.join("root");
        let root = root.to_str().expect("utf-8");
        let text = fs::read_to_string(base.join("verdicts.json")).expect("verdicts");
        let kernel: Value = serde_json::from_str(&text).expect("json");
        // Every 23rd captured pair of each tree.
        let sample: Vec<&Value> = kernel["pairs"]
            .as_array()
            .expect("pairs")
            .iter()
            .step_by(23)
            .collect();
        let pairs: Vec<(String, String)> = sample
            .iter()
            .map(|p| {
                (
                    p["provider"].as_str().expect("p").to_string(),
                    p["client"].as_str().expect("c").to_string(),
                )
            })
            .collect();
        for (k, e) in sample.iter().zip(explain_all(root, "6.12", &pairs)) {
            assert_eq!(e["distance"], k["distance"], "{}: {k}", base.display());
            if k["observed"] == true {
                assert_eq!(e["map_type"], k["map_type"], "{}: {k}", base.display());
            }
            checked += 1;
        }
    }
    assert!(checked > 250, "{checked}");
}

#[test]
fn explain_in_words() {
    let root = fixture_root("q35-acs-rp1");
    let root = root.to_str().expect("utf-8");
    // Short names work as well as BDFs.
    let out = dmaspace(&["explain", "nvme2", "rp0", "--sysfs", root]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).expect("utf-8");
    for want in [
        "provider        0000:03:00.0  nvme2",
        "client          0000:00:02.0  rp0",
        "provider walk, hop 3: 0000:00:02.0: ACS control 0x001d (SV RR CR UF): REDIRECT; found in the client's chain at hop 0",
        "common upstream bridge 0000:00:02.0: distance = 3 + 0 = 3",
        "host bridge pci0000:00 (above both): its device is 0000:00:00.0 [8086:29c0], not on the allowlist -> refused",
        "result: not_supported (pci_p2pdma_distance() = -1)",
        "nearest fix: ACS redirect on 0000:00:02.0 forces the host bridge",
        "pci=disable_acs_redir=0000:00:02.0",
        "the route would be bus-address (bus_addr), distance 3",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
    // The same pair on an AMD Zen CPU (--cpu): through the host bridge.
    let doc = json(&[
        "explain", "nvme2", "rp0", "--sysfs", root, "--cpu", "amd-zen", "--format", "json",
    ]);
    assert_eq!(doc["map_type"], "thru_host_bridge");
    assert_eq!(doc["distance"], 3);
    assert_eq!(doc["fixes"][0]["action"], "disable_acs_redirect");
    assert_eq!(doc["fixes"][0]["map_type"], "bus_addr");
    // The demo's reference server: GPU and NVMe below one switch.
    let doc = json(&[
        "explain",
        "gpu0",
        "nvme0",
        "--reference",
        "--format",
        "json",
    ]);
    assert_eq!(
        (doc["map_type"].as_str(), doc["distance"].as_i64()),
        (Some("bus_addr"), Some(4))
    );
    assert!(doc["fixes"].as_array().is_some_and(Vec::is_empty));
}

#[test]
fn explain_bad_input_exits_2_with_one_line() {
    let root = fixture_root("q35");
    let root = root.to_str().expect("utf-8");
    for args in [
        vec!["explain", "0000:42:00.0", "nvme2", "--sysfs", root],
        vec!["explain", "nvme2", "tpu0", "--sysfs", root],
        vec!["explain", "nvme2", "nvme3", "--sysfs", "/nonexistent/root"],
        vec![
            "explain",
            "nvme2",
            "nvme3",
            "--sysfs",
            root,
            "--pci-ids",
            "/nonexistent/pci.ids",
        ],
    ] {
        let out = dmaspace(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(out.stdout.is_empty());
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.starts_with("dmaspace: error: "), "{err}");
    }
}
