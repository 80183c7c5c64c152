//! `dmaspace demo`: the main job, on the embedded reference server and on fixtures.

use std::path::Path;
use std::process::Command;

fn demo(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_dmaspace"))
        .arg("demo")
        .args(args)
        .output()
        .expect("run dmaspace");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn reference_server_maps_a_mixed_io_through_the_switch() {
    let (code, out, err) = demo(&[]);
    assert_eq!(code, 0, "stderr: {err}");
    assert!(
        out.contains("kernel verdict 0000:03:00.0 -> 0000:05:00.0: bus_addr distance 4"),
        "{out}"
    );
    assert!(out.contains("route witness: ViaBusAddr"), "{out}");
    // Host pages 0 and 1 merge into one IOVA run; P2P pages are bus addresses.
    assert!(out.contains("[0] 0x0000f0000000 + 0x02000  IOVA"), "{out}");
    assert!(
        out.contains("[1] 0x003800000000 + 0x01000  PCI bus address"),
        "{out}"
    );
    assert!(
        out.contains("[3] 0x003800001000 + 0x01000  PCI bus address"),
        "{out}"
    );
}

#[test]
fn cross_socket_provider_goes_through_the_host_bridge() {
    let (code, out, err) = demo(&["--provider", "0000:83:00.0"]);
    assert_eq!(code, 0, "stderr: {err}");
    assert!(out.contains("thru_host_bridge distance 8"), "{out}");
    assert!(out.contains("route witness: ViaHostBridge"), "{out}");
    assert!(!out.contains("PCI bus address, IOMMU bypassed"), "{out}");
    assert!(out.contains("IOVA in the client's domain"), "{out}");
}

#[test]
fn not_supported_pair_maps_host_pages_only() {
    let root =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../pci/tests/fixtures/synthetic/q35/root");
    let root = root.to_str().expect("utf-8 path");
    let (code, out, err) = demo(&[
        "--sysfs",
        root,
        "--provider",
        "0000:03:00.0",
        "--client",
        "0000:05:00.0",
    ]);
    assert_eq!(code, 0, "stderr: {err}");
    assert!(out.contains("not_supported distance -1"), "{out}");
    assert!(out.contains("[0] 0x0000f0000000 + 0x03000  IOVA"), "{out}");
}

#[test]
fn unknown_function_exits_2_with_one_line() {
    let (code, _, err) = demo(&["--client", "0000:42:00.0"]);
    assert_eq!(code, 2);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("0000:42:00.0"), "{err}");
}
