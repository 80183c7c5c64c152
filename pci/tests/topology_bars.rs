//! BARs from sysfs: `resource` (CPU start, end, flags) and the BAR registers
//! in `config` (the bus start), on the generated fixtures and on the trees
//! captured from Linux.
#![cfg(feature = "std")]

pub mod common;

use std::fs;
use std::path::Path;

use common::*;
use dmaspace_pci::{Bar, BarFlags, Topology, sysfs};

fn bar(topo: &Topology, f: &str, index: u8) -> Option<Bar> {
    topo.bars(bdf(f)).expect("function").get(index).copied()
}

#[test]
fn a_64_bit_prefetchable_cmb_above_4_gib() {
    for fixture in ["q35", "q35-nonroot"] {
        // The non-root view holds 64 bytes of config: the BAR registers are in them.
        let topo = sysfs::load(&fixture_root(fixture)).expect("load");
        let cmb = bar(&topo, A, 2).expect("A has BAR 2");
        assert_eq!(cmb.index(), 2);
        assert_eq!(cmb.cpu_start(), 0x8_0000_0000);
        assert_eq!(cmb.size(), 16 << 20);
        assert_eq!(
            cmb.flags(),
            BarFlags::MEM | BarFlags::PREFETCH | BarFlags::MEM_64
        );
        assert_eq!(
            cmb.bus_start(),
            Some(0x8_0000_0000),
            "{fixture}: both BAR registers read"
        );
        // BAR 1 and 3 are the upper halves of the 64-bit BARs 0 and 2.
        assert!(bar(&topo, A, 1).is_none() && bar(&topo, A, 3).is_none());
        assert_eq!(
            bar(&topo, A, 0).map(|b| (b.size(), b.flags())),
            Some((0x4000, BarFlags::MEM | BarFlags::MEM_64))
        );
        // An I/O BAR has no bus start for P2P.
        let io = bar(&topo, E, 4).expect("E has an I/O BAR");
        assert_eq!((io.flags(), io.bus_start()), (BarFlags::IO, None));
        // Functions without a resource file have no BARs.
        assert_eq!(topo.bars(bdf(RP1)).expect("RP1").iter().count(), 0);
    }
}

#[test]
fn a_vfs_bus_start_is_unknown() {
    let topo = sysfs::load(&fixture_root("sriov")).expect("load");
    let pf = bar(&topo, "0000:01:00.0", 0).expect("PF BAR 0");
    assert_eq!(pf.bus_start(), Some(0xfe00_0000));
    let vf = bar(&topo, "0000:01:00.1", 0).expect("VF BAR 0");
    assert_eq!(vf.cpu_start(), 0xfe10_0000);
    assert_eq!(vf.bus_start(), None);
}

/// Writes the q35 fixture into a temporary directory, with A's `resource`
/// replaced by `text` (or removed for `None`).
fn q35_with_resource(text: Option<&str>) -> (tempfile::TempDir, std::path::PathBuf) {
    let tmp = tempfile::tempdir().expect("tempdir");
    write_tree(&spec("q35"), tmp.path()).expect("write");
    let res = tmp
        .path()
        .join("sys/bus/pci/devices")
        .join(A)
        .join("resource");
    match text {
        Some(t) => fs::write(&res, t).expect("write resource"),
        None => fs::remove_file(&res).expect("remove resource"),
    }
    (tmp, res)
}

#[test]
fn a_malformed_resource_line_is_an_error_naming_file_and_line() {
    let good = resource_file(
        &spec("q35")
            .nodes
            .into_iter()
            .find(|n| n.bdf == A)
            .expect("A"),
    );
    let mut lines: Vec<&str> = good.lines().collect();
    lines[2] = "0x0000000800000000 0x0000000800ffffff";
    let (tmp, res) = q35_with_resource(Some(&lines.join("\n")));
    let err = sysfs::load(tmp.path()).expect_err("a two-field line");
    assert_eq!(
        fs::canonicalize(err.path()).expect("path"),
        fs::canonicalize(&res).expect("path")
    );
    assert!(err.to_string().contains("line 3: expected"), "{err}");

    lines[2] = "0x0000000800000000 0x00000007ffffffff 0x000000000014220c";
    let (tmp, _res) = q35_with_resource(Some(&lines.join("\n")));
    let err = sysfs::load(tmp.path()).expect_err("end below start");
    assert!(err.to_string().contains("resource: line 3: end"), "{err}");

    let (tmp, _res) = q35_with_resource(Some("0x0 0x0 0x0\n"));
    let err = sysfs::load(tmp.path()).expect_err("one line");
    assert!(err.to_string().contains("1 lines"), "{err}");
}

#[test]
fn without_a_resource_file_a_function_has_no_bars() {
    let (tmp, _res) = q35_with_resource(None);
    let topo = sysfs::load(tmp.path()).expect("loads");
    assert_eq!(topo.bars(bdf(A)).expect("A").iter().count(), 0);
    assert!(bar(&topo, B, 2).is_some(), "B keeps its BARs");
}

#[test]
fn the_kernels_captures_bus_equals_cpu_on_x86_and_vfs_are_unknown() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/kernel");
    let (mut memory, mut cmbs) = (0, 0);
    for entry in fs::read_dir(&dir).expect("kernel fixtures") {
        let base = entry.expect("entry").path();
        let topo = sysfs::load(&base.join("root")).expect("capture loads");
        for f in topo.functions() {
            let bars = topo.bars(f.bdf).expect("its function");
            for b in bars.iter().filter(|b| b.is_memory()) {
                memory += 1;
                let want = f.physfn.is_none().then_some(b.cpu_start());
                assert_eq!(
                    b.bus_start(),
                    want,
                    "{}: {} BAR {}",
                    base.display(),
                    f.bdf,
                    b.index()
                );
            }
            // QEMU's NVMe with `cmb_size_mb=16`: the CMB is BAR 2.
            if (f.vendor, f.device) == (0x1b36, 0x0010) && f.physfn.is_none() {
                if let Some(cmb) = bars.get(2) {
                    cmbs += 1;
                    assert_eq!(cmb.size(), 16 << 20);
                    assert!(cmb.flags().contains(BarFlags::PREFETCH | BarFlags::MEM_64));
                }
            }
        }
    }
    assert!(memory > 100, "{memory} memory BARs");
    assert!(cmbs > 20, "{cmbs} CMBs");
}
