//! The committed sysfs fixtures: up to date with the generator, loaded by the sysfs
//! loader into the same topology the builder makes, and giving the kernel's verdicts.
#![cfg(feature = "std")]

pub mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use common::*;
use dmaspace_pci::{Allowlist, MapType, PathAcs, Policy, Topology, sysfs};

fn snapshot(dir: &Path) -> BTreeMap<String, String> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        let mut entries: Vec<_> = fs::read_dir(dir)
            .expect("read_dir")
            .map(|e| e.expect("entry").path())
            .collect();
        entries.sort();
        for p in entries {
            let rel = p.strip_prefix(base).expect("prefix").display().to_string();
            let meta = fs::symlink_metadata(&p).expect("meta");
            if meta.file_type().is_symlink() {
                out.insert(
                    rel,
                    format!("-> {}", fs::read_link(&p).expect("link").display()),
                );
            } else if meta.is_dir() {
                walk(base, &p, out);
            } else {
                let bytes = fs::read(&p).expect("read");
                out.insert(rel, format!("{bytes:?}"));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

#[test]
fn fixtures_match_generator() {
    let regen = std::env::var_os("DMASPACE_REGEN_FIXTURES").is_some();
    for spec in all_specs() {
        let committed = fixture_root(spec.name);
        if regen {
            let _ = fs::remove_dir_all(fixtures_dir().join(spec.name));
            write_tree(&spec, &committed).expect("write fixture");
            continue;
        }
        let tmp = tempfile::tempdir().expect("tempdir");
        write_tree(&spec, tmp.path()).expect("write");
        assert!(
            snapshot(tmp.path()) == snapshot(&committed),
            "fixture {} is stale: run DMASPACE_REGEN_FIXTURES=1 cargo test --test topology_fixtures",
            spec.name
        );
    }
}

fn same_verdicts(a: &Topology, b: &Topology, policy: &Policy, name: &str) {
    for p in a.functions() {
        for c in a.functions() {
            let va = a.verdict(p.bdf, c.bdf, policy).expect("verdict a");
            let vb = b.verdict(p.bdf, c.bdf, policy).expect("verdict b");
            assert_eq!(
                (
                    va.map_type,
                    va.distance,
                    va.acs,
                    va.common_upstream,
                    va.acs_redirect,
                    va.unknown_at
                ),
                (
                    vb.map_type,
                    vb.distance,
                    vb.acs,
                    vb.common_upstream,
                    vb.acs_redirect,
                    vb.unknown_at
                ),
                "{name}: {} -> {}",
                p.bdf,
                c.bdf
            );
        }
    }
}

#[test]
fn loader_equals_builder_on_every_fixture() {
    for spec in all_specs() {
        let loaded = sysfs::load(&fixture_root(spec.name)).expect("fixture loads");
        let built = build(&spec);
        let lf: Vec<_> = loaded.functions().copied().collect();
        let bf: Vec<_> = built.functions().copied().collect();
        assert_eq!(lf, bf, "{}", spec.name);
        for f in &lf {
            assert_eq!(
                loaded.bars(f.bdf),
                built.bars(f.bdf),
                "{} {}",
                spec.name,
                f.bdf
            );
        }
        let lh: Vec<_> = loaded.host_bridges().copied().collect();
        let bh: Vec<_> = built.host_bridges().copied().collect();
        assert_eq!(lh, bh, "{}", spec.name);
        assert_eq!(loaded.cpu(), built.cpu(), "{}", spec.name);
        same_verdicts(&loaded, &built, &Policy::default(), spec.name);
        same_verdicts(&loaded, &built, &Policy::linux_6_12(), spec.name);
    }
}

#[test]
fn kernel_table_on_fixtures() {
    for &(name, acs, p, c, plain, zen) in KERNEL_TABLE {
        for (is_zen, want) in [(false, plain), (true, zen)] {
            let fixture = q35_fixture_name(acs, is_zen);
            let topo = sysfs::load(&fixture_root(fixture)).expect("load");
            let v = topo
                .verdict(bdf(p), bdf(c), &Policy::default())
                .expect("verdict");
            assert_eq!(
                (v.kernel_distance(), v.map_type),
                want,
                "{name} on {fixture}"
            );
            assert_eq!(v.acs, PathAcs::Known);
        }
    }
}

#[test]
fn nonroot_view_never_claims_bus_addr() {
    let topo = sysfs::load(&fixture_root("q35-nonroot")).expect("load");
    let full = sysfs::load(&fixture_root("q35")).expect("load");
    let policy = Policy::default();
    for p in topo.functions() {
        for c in topo.functions() {
            let v = topo.verdict(p.bdf, c.bdf, &policy).expect("verdict");
            let truth = full.verdict(p.bdf, c.bdf, &policy).expect("verdict");
            match v.acs {
                PathAcs::Known => {
                    // Known: exactly the full view's answer (e.g. 00:00.0 has no
                    // capability list at all, so 64 bytes say everything).
                    assert_eq!((v.map_type, v.distance), (truth.map_type, truth.distance));
                }
                PathAcs::Unknown => {
                    assert_eq!(v.map_type, MapType::NotSupported, "{} -> {}", p.bdf, c.bdf);
                    assert_eq!(v.kernel_distance(), -1);
                    assert_eq!(v.distance, truth.distance);
                    assert!(v.unknown_at.is_some());
                    assert!(truth.common_upstream.is_some());
                }
            }
            if truth.common_upstream.is_some() && p.bdf != bdf("0000:00:00.0") {
                assert_ne!(v.map_type, MapType::BusAddr, "{} -> {}", p.bdf, c.bdf);
            }
        }
    }
    // A->B: BusAddr with full config, unknown without.
    let v = topo.verdict(bdf(A), bdf(B), &policy).expect("verdict");
    assert_eq!(
        (v.map_type, v.acs, v.unknown_at),
        (MapType::NotSupported, PathAcs::Unknown, Some(bdf(A)))
    );
}

#[test]
fn allowlist_cases_on_fixtures() {
    let v = |fixture: &str, p: &str, c: &str, list: Allowlist| {
        let topo = sysfs::load(&fixture_root(fixture)).expect("load");
        let policy = Policy::new(list);
        let v = topo.verdict(bdf(p), bdf(c), &policy).expect("verdict");
        (v.kernel_distance(), v.map_type)
    };
    use MapType::{NotSupported as NS, ThruHostBridge as HB};
    // REQ_SAME_HOST_BRIDGE (Xeon E5 3c00): allowed below one host bridge, not across.
    for list in [Allowlist::linux_6_12(), Allowlist::current()] {
        assert_eq!(
            v(
                "xeon-e5-two-hosts",
                "0000:01:00.0",
                "0000:02:00.0",
                list.clone()
            ),
            (4, HB)
        );
        assert_eq!(
            v(
                "xeon-e5-two-hosts",
                "0000:01:00.0",
                "0000:81:00.0",
                list.clone()
            ),
            (-1, NS)
        );
        // Skylake 2020 has no flag: across host bridges is fine.
        assert_eq!(
            v(
                "skylake-two-hosts",
                "0000:01:00.0",
                "0000:81:00.0",
                list.clone()
            ),
            (4, HB)
        );
        // First root-bus function 00:01.0, not 00.0: taken only if a Root Port.
        assert_eq!(
            v(
                "first-rp-not-00",
                "0000:01:00.0",
                "0000:00:05.0",
                list.clone()
            ),
            (3, HB)
        );
        assert_eq!(
            v(
                "first-ep-not-00",
                "0000:01:00.0",
                "0000:00:05.0",
                list.clone()
            ),
            (-1, NS)
        );
    }
    // Google any-device: only today's list.
    assert_eq!(
        v(
            "google-two-hosts",
            "0000:01:00.0",
            "0000:81:00.0",
            Allowlist::current()
        ),
        (4, HB)
    );
    assert_eq!(
        v(
            "google-two-hosts",
            "0000:01:00.0",
            "0000:81:00.0",
            Allowlist::linux_6_12()
        ),
        (-1, NS)
    );
    // The empty list: nothing through the host bridge.
    assert_eq!(
        v(
            "skylake-two-hosts",
            "0000:01:00.0",
            "0000:02:00.0",
            Allowlist::empty()
        ),
        (-1, NS)
    );
}

#[test]
fn sriov_and_vmd_on_fixtures() {
    let topo = sysfs::load(&fixture_root("sriov")).expect("load");
    let p = Policy::default();
    let (pf, vf1, vf2) = (
        bdf("0000:01:00.0"),
        bdf("0000:01:00.1"),
        bdf("0000:01:00.2"),
    );
    let rp = bdf("0000:00:02.0");
    assert_eq!(topo.function(vf1).and_then(|f| f.physfn), Some(pf));
    assert_eq!(topo.upstream_bridge(vf1).expect("ub"), Some(rp));
    for (a, b) in [(vf1, vf2), (pf, vf1), (vf2, pf)] {
        let v = topo.verdict(a, b, &p).expect("verdict");
        assert_eq!(
            (v.kernel_distance(), v.map_type, v.common_upstream),
            (2, MapType::BusAddr, Some(rp))
        );
    }
    // VF -> VF itself: distance 0.
    assert_eq!(topo.verdict(vf1, vf1, &p).expect("v").kernel_distance(), 0);
    // VF to the NVMe on the other root port: through the host bridge (29c0: not allowed).
    assert_eq!(
        topo.verdict(vf1, bdf("0000:02:00.0"), &p)
            .expect("v")
            .kernel_distance(),
        -1
    );

    let topo = sysfs::load(&fixture_root("vmd")).expect("load");
    let inside = topo.function(bdf("10000:01:00.0")).expect("fn");
    assert_eq!(inside.host_bridge.to_string(), "pci10000:00");
    assert!(
        topo.host_bridges()
            .any(|h| h.id.to_string() == "pci10000:00" && h.below == Some(bdf("0000:00:0e.0")))
    );
    // Outside VMD: 09a2 at 00:00.0 is allowlisted, same host bridge.
    assert_eq!(
        topo.verdict(bdf("0000:01:00.0"), bdf("0000:00:0e.0"), &p)
            .expect("v")
            .kernel_distance(),
        3
    );
    // Across VMD's host bridge: 10000:00:02.0 (8086:347a) is not allowlisted.
    assert_eq!(
        topo.verdict(bdf("0000:01:00.0"), bdf("10000:01:00.0"), &p)
            .expect("v")
            .kernel_distance(),
        -1
    );
    assert_eq!(
        topo.verdict(bdf("10000:01:00.0"), bdf("10000:02:00.0"), &p)
            .expect("v")
            .kernel_distance(),
        -1
    );
}
