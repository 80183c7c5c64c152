//! `dmaspace topology` on every synthetic fixture (JSON checked field by field against
//! the builder API) and on malformed trees (exit 2, one line on stderr, no panic).

#[path = "../../pci/tests/common/mod.rs"]
pub mod common;

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use common::*;
use dmaspace::pci::{Allowlist, Policy};
use serde_json::Value;

fn dmaspace(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dmaspace"))
        .args(args)
        .output()
        .expect("run dmaspace")
}

fn json_of(root: &Path, allowlist: &str) -> Value {
    let root = root.to_str().expect("utf-8 path");
    let out = dmaspace(&[
        "topology", "--sysfs", root, "--format", "json", "--kernel", allowlist,
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("stdout is one JSON object")
}

#[test]
fn json_contract_on_every_fixture() {
    for spec in all_specs() {
        let topo = build(&spec);
        for (flag, list) in [
            ("7.3", Allowlist::linux_7_3()),
            ("6.12", Allowlist::linux_6_12()),
        ] {
            let doc = json_of(&fixture_root(spec.name), flag);
            let devices = doc["devices"].as_array().expect("devices array");
            let want: Vec<String> = topo.functions().map(|f| f.bdf.to_string()).collect();
            let got: Vec<&str> = devices
                .iter()
                .map(|d| d["bdf"].as_str().expect("bdf string"))
                .collect();
            assert_eq!(got, want, "{}", spec.name);
            for (d, f) in devices.iter().zip(topo.functions()) {
                assert_eq!(d["vendor"], format!("0x{:04x}", f.vendor));
                assert_eq!(d["device"], format!("0x{:04x}", f.device));
                assert_eq!(d["host_bridge"], f.host_bridge.to_string());
            }
            let pairs = doc["pairs"].as_array().expect("pairs array");
            let n = want.len();
            assert_eq!(
                pairs.len(),
                n * n,
                "{}: one entry per ordered pair",
                spec.name
            );
            let policy = Policy::new(list.clone());
            let mut i = 0;
            for p in topo.functions() {
                for c in topo.functions() {
                    let v = topo.verdict(p.bdf, c.bdf, &policy).expect("verdict");
                    let e = &pairs[i];
                    i += 1;
                    assert_eq!(e["provider"], p.bdf.to_string());
                    assert_eq!(e["client"], c.bdf.to_string());
                    assert_eq!(
                        e["map_type"],
                        v.map_type.as_str(),
                        "{} {} -> {}",
                        spec.name,
                        p.bdf,
                        c.bdf
                    );
                    assert_eq!(
                        e["distance"],
                        v.kernel_distance(),
                        "{} {} -> {}",
                        spec.name,
                        p.bdf,
                        c.bdf
                    );
                    assert_eq!(e["acs"], v.acs.as_str());
                    let d = e["distance"].as_i64().expect("distance int");
                    assert_eq!(d == -1, e["map_type"] == "not_supported");
                    if p.bdf == c.bdf && e["acs"] == "known" && e["map_type"] != "not_supported" {
                        assert_eq!(d, 0);
                    }
                }
            }
        }
    }
}

#[test]
fn kernel_table_through_the_cli() {
    for &(name, acs, p, c, plain, zen) in KERNEL_TABLE {
        for (is_zen, (dist, map)) in [(false, plain), (true, zen)] {
            let doc = json_of(&fixture_root(q35_fixture_name(acs, is_zen)), "7.3");
            let pair = doc["pairs"]
                .as_array()
                .expect("pairs")
                .iter()
                .find(|e| e["provider"] == p && e["client"] == c)
                .expect("pair present");
            assert_eq!(pair["distance"], dist, "{name} zen={is_zen}");
            assert_eq!(pair["map_type"], map.as_str(), "{name} zen={is_zen}");
        }
    }
}

/// The matrix row of a function, by its short name.
fn matrix_row<'t>(text: &'t str, name: &str) -> &'t str {
    text.lines()
        .skip_while(|l| !l.starts_with("P2P matrix"))
        .skip(2) // the title and the column names
        .find(|l| l.split_whitespace().next() == Some(name))
        .expect("matrix row")
}

#[test]
fn table_and_dot_formats() {
    let root = fixture_root("q35");
    let root = root.to_str().expect("utf-8");
    let out = dmaspace(&["topology", "--sysfs", root]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).expect("utf-8");
    // Short names, the islands, nvidia-smi style cells with the kernel's distance.
    assert!(
        text.contains("Legend") && text.contains("0000:03:00.0"),
        "{text}"
    );
    assert!(
        text.contains("nvme2  0000:03:00.0  1b36:0010  QEMU NVMe controller"),
        "{text}"
    );
    assert!(
        text.contains("island 1: below 0000:00:02.0 (rp0, pci0000:00): nvme2 nvme3"),
        "{text}"
    );
    let row = matrix_row(&text, "nvme2");
    assert_eq!(
        row.split_whitespace().collect::<Vec<_>>(),
        ["nvme2", "NS", "NS", "X", "PXB4", "NS", "NS", "NS"]
    );
    let out = dmaspace(&["topology", "--sysfs", root, "--format", "dot"]);
    assert_eq!(out.status.code(), Some(0));
    let dot = String::from_utf8(out.stdout).expect("utf-8");
    assert!(dot.starts_with("digraph pci {") && dot.trim_end().ends_with('}'));
    assert!(dot.contains("subgraph cluster_pci0000_00 {"), "{dot}");
    assert!(dot.contains("subgraph cluster_island_1 {"), "{dot}");
    // The tree's edges only: one per function, no all-pairs edges.
    assert_eq!(dot.matches(" -> ").count(), 14, "{dot}");
}

#[test]
fn only_filters_the_matrix_and_the_json() {
    let root = fixture_root("dgx");
    let root = root.to_str().expect("utf-8");
    let out = dmaspace(&["topology", "--sysfs", root, "--only", "gpu,nvme"]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).expect("utf-8");
    assert!(text.contains("P2P matrix, row = provider, column = client: 16 of 130 functions"));
    let header = text
        .lines()
        .skip_while(|l| !l.starts_with("P2P matrix"))
        .nth(1)
        .expect("matrix header");
    assert_eq!(header.split_whitespace().count(), 16, "{header}");
    assert!(header.contains("gpu0") && header.contains("nvme7") && !header.contains("nic"));
    // Same switch: PXB4 (GPU -> switch -> NVMe), but PHB4 to the GPU whose port has ACS
    // redirect; other switch: SYS8 (host bridges allowed).
    let row = matrix_row(&text, "gpu0");
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(&cells[..5], ["gpu0", "X", "PHB4", "PXB4", "PXB4"], "{row}");
    assert!(cells.contains(&"SYS8"), "{row}");
    // The fourth switch has ACS redirect on its downstream ports: through the host bridge.
    assert!(text.contains("PHB4"), "{text}");

    let out = dmaspace(&[
        "topology",
        "--sysfs",
        root,
        "--format",
        "json",
        "--only",
        "nic1,0000:18:00.0,vf",
    ]);
    assert_eq!(out.status.code(), Some(0));
    let doc: Value = serde_json::from_slice(&out.stdout).expect("json");
    let devices = doc["devices"].as_array().expect("devices");
    assert_eq!(devices.len(), 1 + 1 + 64);
    assert_eq!(doc["pairs"].as_array().map(Vec::len), Some(66 * 66));
    assert_eq!(doc["islands"].as_array().map(Vec::len), Some(3));

    for bad in ["tpu", "", "gpu99"] {
        let out = dmaspace(&["topology", "--sysfs", root, "--only", bad]);
        assert_eq!(out.status.code(), Some(2), "--only {bad:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{err}");
    }
}

#[test]
fn nonroot_view_warns_and_never_says_bus_addr_on_unknown() {
    let root = fixture_root("q35-nonroot");
    let out = dmaspace(&[
        "topology",
        "--sysfs",
        root.to_str().expect("utf-8"),
        "--format",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("warning: ACS of 13 function(s) could not be read"),
        "{stderr}"
    );
    let doc: Value = serde_json::from_slice(&out.stdout).expect("json");
    let pairs = doc["pairs"].as_array().expect("pairs");
    let unknown: Vec<&Value> = pairs.iter().filter(|e| e["acs"] == "unknown").collect();
    assert!(!unknown.is_empty());
    for e in unknown {
        assert_eq!(e["map_type"], "not_supported");
        assert_eq!(e["distance"], -1);
        assert!(e["unknown_at"].is_string());
    }
    let ab = pairs
        .iter()
        .find(|e| e["provider"] == A && e["client"] == B)
        .expect("A->B");
    assert_eq!(ab["acs"], "unknown");
}

/// Writes the q35 fixture into a temp dir and lets `corrupt` break it.
fn broken(corrupt: impl FnOnce(&Path)) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().expect("tempdir");
    write_tree(&q35("q35", PLAIN_CPU, false, false), tmp.path()).expect("write");
    corrupt(tmp.path());
    tmp
}

fn a_dir(root: &Path) -> std::path::PathBuf {
    fs::canonicalize(root.join("sys/bus/pci/devices").join(A)).expect("A dir")
}

fn assert_bad_input(root: &Path, mention: &str) {
    let out = dmaspace(&[
        "topology",
        "--sysfs",
        root.to_str().expect("utf-8"),
        "--format",
        "json",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    assert!(out.stdout.is_empty(), "nothing on stdout");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(stderr.starts_with("dmaspace: error: "), "{stderr}");
    assert!(
        stderr.contains(mention),
        "{stderr} should mention {mention}"
    );
    assert!(!stderr.contains("panicked"));
}

#[test]
fn malformed_trees_exit_2() {
    #[cfg(unix)]
    use std::os::unix::fs::symlink;

    let t = broken(|r| fs::remove_file(a_dir(r).join("vendor")).expect("rm"));
    assert_bad_input(t.path(), "0000:03:00.0/vendor");

    let t = broken(|r| fs::write(a_dir(r).join("vendor"), "banana\n").expect("w"));
    assert_bad_input(t.path(), "0000:03:00.0/vendor");

    let t = broken(|r| fs::write(a_dir(r).join("class"), "0x1000000\n").expect("w"));
    assert_bad_input(t.path(), "0000:03:00.0/class");

    let t = broken(|r| fs::write(a_dir(r).join("config"), [0u8; 20]).expect("w"));
    assert_bad_input(t.path(), "0000:03:00.0/config");

    // Standard capability list pointing at itself.
    let t = broken(|r| {
        let p = a_dir(r).join("config");
        let mut c = fs::read(&p).expect("r");
        c[0x41] = 0x40;
        c[0x40] = 0x01; // not the PCIe cap: keeps looping
        fs::write(&p, c).expect("w");
    });
    assert_bad_input(t.path(), "capability list loops");

    // Extended capability list pointing at itself.
    let t = broken(|r| {
        let p = a_dir(r).join("config");
        let mut c = fs::read(&p).expect("r");
        let hdr: u32 = 0x0001 | (2 << 16) | (0x100 << 20);
        c[0x100..0x104].copy_from_slice(&hdr.to_le_bytes());
        fs::write(&p, c).expect("w");
    });
    assert_bad_input(t.path(), "extended capability list loops");

    // Symlink loop in sys/bus/pci/devices.
    let t = broken(|r| {
        let bus = r.join("sys/bus/pci/devices");
        symlink("0000:07:00.1", bus.join("0000:07:00.0")).expect("ln");
        symlink("0000:07:00.0", bus.join("0000:07:00.1")).expect("ln");
    });
    assert_bad_input(t.path(), "0000:07:00.0");

    // A link that leaves the tree.
    let t = broken(|r| symlink("/tmp", r.join("sys/bus/pci/devices/0000:09:00.0")).expect("ln"));
    assert_bad_input(t.path(), "outside");

    // Names that are not PCI addresses.
    let t = broken(|r| fs::write(r.join("sys/bus/pci/devices/junk"), "").expect("w"));
    assert_bad_input(t.path(), "junk");

    // config is a FIFO-like non-file: a directory.
    let t = broken(|r| {
        let p = a_dir(r).join("config");
        fs::remove_file(&p).expect("rm");
        fs::create_dir(&p).expect("mkdir");
    });
    assert_bad_input(t.path(), "not a regular file");

    // Missing cpuinfo, garbage cpu family.
    let t = broken(|r| fs::remove_file(r.join("proc/cpuinfo")).expect("rm"));
    assert_bad_input(t.path(), "proc/cpuinfo");
    let t = broken(|r| {
        fs::write(
            r.join("proc/cpuinfo"),
            "vendor_id : AuthenticAMD\ncpu family : zen\n",
        )
        .expect("w")
    });
    assert_bad_input(t.path(), "proc/cpuinfo");

    // A dangling physfn link.
    let t = broken(|r| symlink("../0000:02:01.0", a_dir(r).join("physfn")).expect("ln"));
    assert_bad_input(t.path(), "0000:03:00.0/physfn");
    // A bridge missing from sys/bus/pci/devices while its children are listed.
    let t = broken(|r| {
        fs::remove_file(r.join("sys/bus/pci/devices/0000:02:00.0")).expect("rm");
    });
    assert_bad_input(t.path(), "not in the topology");

    // Empty tree, missing tree.
    let t = tempfile::tempdir().expect("tempdir");
    fs::create_dir_all(t.path().join("sys/bus/pci/devices")).expect("mkdir");
    fs::create_dir_all(t.path().join("sys/devices")).expect("mkdir");
    assert_bad_input(t.path(), "no PCI functions found");
    assert_bad_input(&t.path().join("nope"), "nope");
}

#[test]
fn bad_arguments_exit_2() {
    let out = dmaspace(&["topology", "--kernel", "linux-5.0"]);
    assert_eq!(out.status.code(), Some(2));
    let out = dmaspace(&["topology", "--format", "yaml"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn live_machine_does_not_crash() {
    // Whatever this machine is, the command must either work or fail cleanly.
    let out = dmaspace(&["topology", "--format", "json"]);
    let code = out.status.code();
    assert!(code == Some(0) || code == Some(2), "{:?}", out);
    if code == Some(0) {
        let doc: Value = serde_json::from_slice(&out.stdout).expect("json");
        let n = doc["devices"].as_array().map_or(0, Vec::len);
        assert_eq!(doc["pairs"].as_array().map_or(0, Vec::len), n * n);
    }
}

/// `--kernel auto` (the default) judges a tree by the kernel it names in
/// `proc/sys/kernel/osrelease`; a kernel this crate has no policy for is one
/// error line, never a guess; without the file, Linux 7.3's rules, said so.
#[test]
fn the_kernel_named_by_the_tree_picks_the_rules() {
    let osrelease = |r: &Path, release: &str| {
        fs::create_dir_all(r.join("proc/sys/kernel")).expect("mkdir");
        fs::write(r.join("proc/sys/kernel/osrelease"), release).expect("w");
    };
    let t = broken(|r| osrelease(r, "6.12.118-amd64\n"));
    let out = dmaspace(&[
        "topology",
        "--sysfs",
        t.path().to_str().expect("utf-8"),
        "--format",
        "json",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(doc["allowlist"], "linux-6.12");

    let t = broken(|r| osrelease(r, "7.3.4+bpo-amd64\n"));
    let doc = json_of(t.path(), "auto");
    assert_eq!(doc["allowlist"], "linux-7.3");
    // An explicit --kernel overrides what the tree says.
    assert_eq!(json_of(t.path(), "6.12")["allowlist"], "linux-6.12");

    let t = broken(|r| osrelease(r, "6.1.0-40-amd64\n"));
    assert_bad_input(t.path(), "no P2PDMA policy for kernel 6.1.0-40-amd64");

    let t = broken(|_| {});
    assert_eq!(json_of(t.path(), "auto")["allowlist"], "linux-7.3");
}
