//! Bounded input and output: `--pci-ids` and the sysfs tree refuse a FIFO or a device
//! node at once (each run has a deadline, so a regression fails instead of hanging the
//! suite), and `--format json` streams a generated fleet whose n² pairs all parse.
#![cfg(unix)]

#[path = "../../pci/tests/common/mod.rs"]
pub mod common;

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// Runs `dmaspace args`, stdout and stderr into files in `dir`; kills it and panics if
/// it has not exited within `limit`. Returns (exit code, stdout, stderr).
fn run_within(dir: &Path, args: &[&str], limit: Duration) -> (Option<i32>, Vec<u8>, String) {
    let (out_path, err_path) = (dir.join("stdout"), dir.join("stderr"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_dmaspace"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(fs::File::create(&out_path).expect("stdout file"))
        .stderr(fs::File::create(&err_path).expect("stderr file"))
        .spawn()
        .expect("run dmaspace");
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("dmaspace {args:?} did not exit within {limit:?}");
        }
        thread::sleep(Duration::from_millis(10));
    };
    let stderr = String::from_utf8_lossy(&fs::read(&err_path).expect("stderr")).into_owned();
    (status.code(), fs::read(&out_path).expect("stdout"), stderr)
}

const DEADLINE: Duration = Duration::from_secs(5);

fn mkfifo(path: &Path) {
    let status = Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("run mkfifo");
    assert!(status.success(), "mkfifo {}", path.display());
}

fn assert_refused(code: Option<i32>, stderr: &str, mention: &str) {
    assert_eq!(code, Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains(mention),
        "{stderr} should mention {mention}"
    );
}

#[test]
fn pci_ids_fifo_and_dev_zero_are_refused_at_once() {
    let t = tempfile::tempdir().expect("tempdir");
    let fifo = t.path().join("pci.ids");
    mkfifo(&fifo);
    let fifo = fifo.to_str().expect("utf-8");
    let (code, out, err) = run_within(
        t.path(),
        &["topology", "--reference", "--pci-ids", fifo],
        DEADLINE,
    );
    assert_refused(code, &err, &format!("--pci-ids {fifo}: not a regular file"));
    assert!(out.is_empty());

    // /dev/zero never ends: refused before a byte is read, not read until memory runs out.
    let (code, _, err) = run_within(
        t.path(),
        &["topology", "--reference", "--pci-ids", "/dev/zero"],
        DEADLINE,
    );
    assert_refused(code, &err, "--pci-ids /dev/zero: not a regular file");

    // A pci.ids over the limit (16 MiB) is refused too; a real one (1.5 MB) is read.
    let big = t.path().join("big.ids");
    let f = fs::File::create(&big).expect("create");
    f.set_len(16 * 1024 * 1024 + 1).expect("set_len");
    let (code, _, err) = run_within(
        t.path(),
        &[
            "topology",
            "--reference",
            "--pci-ids",
            big.to_str().expect("utf-8"),
        ],
        DEADLINE,
    );
    assert_refused(code, &err, "larger than 16777216 bytes");
}

#[test]
fn a_fifo_in_the_sysfs_tree_is_refused_at_once() {
    let t = tempfile::tempdir().expect("tempdir");
    let root = t.path().join("root");
    write_tree(&spec("q35"), &root).expect("write tree");
    let a = fs::canonicalize(root.join("sys/bus/pci/devices/0000:03:00.0")).expect("A");
    fs::remove_file(a.join("config")).expect("rm config");
    mkfifo(&a.join("config"));
    let (code, _, err) = run_within(
        t.path(),
        &[
            "topology",
            "--sysfs",
            root.to_str().expect("utf-8"),
            "--format",
            "json",
        ],
        DEADLINE,
    );
    assert_refused(code, &err, "0000:03:00.0/config: not a regular file");
}

#[test]
fn a_write_error_names_the_output_and_exits_1() {
    if !Path::new("/dev/full").exists() {
        return;
    }
    let t = tempfile::tempdir().expect("tempdir");
    let (code, _, err) = run_within(
        t.path(),
        &[
            "topology",
            "--reference",
            "--format",
            "json",
            "-o",
            "/dev/full",
        ],
        DEADLINE,
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("/dev/full"), "{err}");
}

/// A host of SR-IOV VFs (201 functions on one root bus): the streamed JSON parses, with
/// every function and n² pairs in provider-major BDF order; `--only all` streams the
/// table of 201² cells.
#[test]
fn a_fleet_streams_n_squared_pairs() {
    let t = tempfile::tempdir().expect("tempdir");
    let root = t.path().join("root");
    let fleet = fleet("fleet", 4, 49);
    write_tree(&fleet, &root).expect("write tree");
    let n = fleet.nodes.len();
    assert_eq!(n, 201);
    let root = root.to_str().expect("utf-8");
    let limit = Duration::from_secs(120);
    let (code, out, err) = run_within(
        t.path(),
        &["topology", "--sysfs", root, "--format", "json"],
        limit,
    );
    assert_eq!(code, Some(0), "{err}");
    let doc: Value = serde_json::from_slice(&out).expect("the streamed JSON parses");
    let devices = doc["devices"].as_array().expect("devices");
    let mut bdfs: Vec<&str> = fleet.nodes.iter().map(|n| n.bdf).collect();
    bdfs.sort_unstable();
    let got: Vec<&str> = devices
        .iter()
        .map(|d| d["bdf"].as_str().expect("bdf"))
        .collect();
    assert_eq!(got, bdfs);
    let pairs = doc["pairs"].as_array().expect("pairs");
    assert_eq!(pairs.len(), n * n);
    for (i, pair) in pairs.iter().enumerate() {
        assert_eq!(pair["provider"], bdfs[i / n]);
        assert_eq!(pair["client"], bdfs[i % n]);
        // One root bus, a plain CPU, an unlisted host bridge: only a function with
        // itself reaches by bus address.
        let same = i / n == i % n;
        assert_eq!(
            pair["map_type"],
            if same { "bus_addr" } else { "not_supported" }
        );
        assert_eq!(pair["acs"], "known");
    }
    assert_eq!(doc["allowlist"], "linux-7.3");
    assert!(doc["islands"].as_array().expect("islands").is_empty());

    let (code, out, err) = run_within(
        t.path(),
        &["topology", "--sysfs", root, "--only", "all"],
        limit,
    );
    assert_eq!(code, Some(0), "{err}");
    let text = String::from_utf8(out).expect("utf-8");
    assert!(text.contains("201 of 201 functions"), "{text}");
}

/// Writes the fleet of the scale measurement (16 PFs with 124 VFs each: 2,001
/// functions on one root bus) to `$DMASPACE_FLEET_OUT`, for
/// `/usr/bin/time -v target/release/dmaspace topology --sysfs $DMASPACE_FLEET_OUT --format json -o /dev/null`:
/// `DMASPACE_FLEET_OUT=/tmp/fleet cargo test -p dmaspace-cli --test cli_bounded -- --ignored`.
#[test]
#[ignore = "writes the 2,001-function tree of the scale measurement"]
fn write_the_scale_fleet() {
    let Some(dir) = std::env::var_os("DMASPACE_FLEET_OUT") else {
        panic!("set DMASPACE_FLEET_OUT to the directory to write");
    };
    let fleet = fleet("fleet-2001", 16, 124);
    assert_eq!(fleet.nodes.len(), 2001);
    write_tree(&fleet, Path::new(&dir)).expect("write tree");
}
