//! `Topology::explain` and `Topology::islands` on every fixture: the explanation's
//! verdict is the verdict (and, on the trees captured from Linux 6.12, the kernel's),
//! its steps tell the same story, every fix is a real improvement, and the islands are
//! exactly the groups that the pairwise verdicts join by bus address.
#![cfg(feature = "std")]

pub mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::*;
use dmaspace_pci::{
    Allowlist, Bdf, CpuInfo, FixAction, MapType, PathAcs, Policy, Step, Topology, Verdict, sysfs,
};
use serde_json::Value;

fn kernel_fixtures() -> Vec<(String, PathBuf)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/kernel");
    let mut out: Vec<(String, PathBuf)> = fs::read_dir(&dir)
        .expect("tests/fixtures/kernel")
        .map(|e| {
            let e = e.expect("entry");
            (e.file_name().to_string_lossy().into_owned(), e.path())
        })
        .collect();
    out.sort();
    out
}

fn rank(m: MapType) -> u8 {
    match m {
        MapType::BusAddr => 0,
        MapType::ThruHostBridge => 1,
        MapType::NotSupported => 2,
    }
}

/// Checks one pair and returns the verdict.
fn check_pair(topo: &Topology, p: Bdf, c: Bdf, policy: &Policy, what: &str) -> Verdict {
    let v = topo.verdict(p, c, policy).expect("verdict");
    let why = topo.explain(p, c, policy).expect("explain");
    assert_eq!(why.verdict, v, "{what}: {p} -> {c}");
    // The story the steps tell is the verdict's.
    assert_eq!(
        why.steps.last(),
        Some(&Step::Outcome {
            map_type: v.map_type,
            distance: v.distance
        }),
        "{what}: {p} -> {c}"
    );
    let common = why.steps.iter().find_map(|s| match s {
        Step::CommonUpstream { node, .. } => Some(*node),
        _ => None,
    });
    assert_eq!(common, v.common_upstream, "{what}: {p} -> {c}");
    let redirect = why.steps.iter().find_map(|s| match s {
        Step::AcsRedirect { nodes } => nodes.first().map(|n| n.0),
        _ => None,
    });
    if v.common_upstream.is_some() {
        assert_eq!(redirect, v.acs_redirect, "{what}: {p} -> {c}");
    }
    let hops = why
        .steps
        .iter()
        .filter(|s| matches!(s, Step::ProviderHop { .. }))
        .count();
    assert!(hops >= 1, "{what}: {p} -> {c}");
    let text = why.to_string();
    assert!(text.contains(&p.to_string()) && text.contains(&c.to_string()));
    // Fixes improve the answer, nearest first; none for bus_addr.
    if v.map_type == MapType::BusAddr {
        assert!(why.fixes.is_empty(), "{what}: {p} -> {c}");
    }
    let mut last = (0u8, 0u8);
    for fix in &why.fixes {
        let r = fix.would_be.map_or(3, |w| rank(w.map_type));
        if let Some(w) = fix.would_be {
            assert!(
                rank(w.map_type) < rank(v.map_type),
                "{what}: {p} -> {c}: {fix}"
            );
        }
        assert!(r >= last.0, "{what}: {p} -> {c}: fixes ordered");
        last = (r, 0);
    }
    if v.acs == PathAcs::Unknown {
        assert!(
            matches!(
                why.nearest_fix().map(|f| &f.action),
                Some(FixAction::ReadConfigSpace { .. })
            ) || why.fixes.iter().all(|f| f.would_be.is_some()),
            "{what}: {p} -> {c}"
        );
    }
    v
}

fn check_islands(topo: &Topology, what: &str) {
    let islands = topo.islands().expect("islands");
    let policy = Policy::default();
    let island_of = |b: Bdf| islands.iter().position(|i| i.contains(b));
    for i in &islands {
        assert!(i.devices(topo).count() >= 2, "{what}");
        assert!(i.contains(i.top), "{what}");
        for m in &i.members {
            if *m != i.top {
                let v = topo.verdict(*m, i.top, &policy).expect("verdict");
                assert_eq!(v.common_upstream, Some(i.top), "{what}: {m} below the top");
            }
        }
    }
    for p in topo.functions() {
        for c in topo.functions() {
            if p.bdf == c.bdf {
                continue;
            }
            let bus = topo
                .verdict(p.bdf, c.bdf, &policy)
                .expect("v")
                .is_bus_addr();
            match (island_of(p.bdf), island_of(c.bdf)) {
                (Some(a), Some(b)) => assert_eq!(bus, a == b, "{what}: {} {}", p.bdf, c.bdf),
                (Some(_), None) | (None, Some(_)) => {
                    assert!(!bus, "{what}: {} {}", p.bdf, c.bdf);
                }
                // Both outside every island: a group with fewer than two devices.
                (None, None) => {}
            }
        }
    }
}

#[test]
fn explain_agrees_with_verdict_on_every_synthetic_fixture() {
    for spec in all_specs() {
        let topo = sysfs::load(&fixture_root(spec.name)).expect("load");
        let mut zen = topo.clone();
        zen.set_cpu(CpuInfo::amd_zen());
        let policies: &[Policy] = if spec.name == "dgx" {
            &[Policy::linux_6_12()]
        } else {
            &[
                Policy::default(),
                Policy::linux_6_12(),
                Policy::new(Allowlist::empty()),
            ]
        };
        for t in [&topo, &zen] {
            for policy in policies {
                for p in t.functions() {
                    for c in t.functions() {
                        check_pair(t, p.bdf, c.bdf, policy, spec.name);
                    }
                }
            }
        }
        check_islands(&topo, spec.name);
    }
}

#[test]
fn explain_agrees_with_linux_on_every_captured_pair() {
    let (mut pairs, mut agree) = (0usize, 0usize);
    for (name, dir) in kernel_fixtures() {
        let topo = sysfs::load(&dir.join("root")).expect("load");
        let json: Value =
            serde_json::from_str(&fs::read_to_string(dir.join("verdicts.json")).expect("read"))
                .expect("json");
        for pair in json["pairs"].as_array().expect("pairs") {
            let bdf = |k: &str| -> Bdf { pair[k].as_str().expect(k).parse().expect("bdf") };
            let v = check_pair(
                &topo,
                bdf("provider"),
                bdf("client"),
                &Policy::linux_6_12(),
                &name,
            );
            pairs += 1;
            if i64::from(v.kernel_distance()) == pair["distance"].as_i64().expect("distance") {
                agree += 1;
            }
        }
        check_islands(&topo, &name);
    }
    assert_eq!(agree, pairs);
    assert_eq!(pairs, 6046);
}

#[test]
fn explain_tells_the_brief_table() {
    let policy = Policy::default();
    // A -> B with ACS redirect on RP1: RP1 is above the common bridge, not looked at.
    let topo = sysfs::load(&fixture_root("q35-acs-rp1")).expect("load");
    let why = topo.explain(bdf(A), bdf(B), &policy).expect("explain");
    assert_eq!(why.verdict.map_type, MapType::BusAddr);
    assert!(why.steps.contains(&Step::CommonUpstream {
        node: bdf("0000:01:00.0"),
        provider_hops: 2,
        client_hops: 2
    }));
    assert!(!why.to_string().contains("REDIRECT"));
    // A -> RP1 with ACS redirect on RP1: the common bridge is counted.
    let why = topo.explain(bdf(A), bdf(RP1), &policy).expect("explain");
    assert_eq!(why.verdict.map_type, MapType::NotSupported);
    let fix = why.nearest_fix().expect("fix");
    assert_eq!(
        fix.action,
        FixAction::DisableAcsRedirect {
            nodes: vec![bdf(RP1)]
        }
    );
    let w = fix.would_be.expect("outcome");
    assert_eq!((w.map_type, w.distance), (MapType::BusAddr, 3));
    let text = why.to_string();
    assert!(
        text.contains("nearest fix: ACS redirect on 0000:00:02.0 forces the host bridge"),
        "{text}"
    );
    assert!(
        text.contains("the route would be bus-address (bus_addr), distance 3"),
        "{text}"
    );
    assert!(
        text.contains("pci=disable_acs_redir=0000:00:02.0"),
        "{text}"
    );
    // A -> C on a plain CPU: no common bridge; the Q35 MCH is not on the allowlist.
    let topo = sysfs::load(&fixture_root("q35")).expect("load");
    let why = topo.explain(bdf(A), bdf(C), &policy).expect("explain");
    let text = why.to_string();
    assert!(
        text.contains("no common upstream bridge") && text.contains("4 + 2 = 6"),
        "{text}"
    );
    assert!(text.contains("[8086:29c0], not on the allowlist"), "{text}");
    let actions: Vec<&str> = why.fixes.iter().map(|f| f.action.as_str()).collect();
    assert_eq!(actions, ["allowlist", "cpu"]);
    // The same on the AMD Zen fixture: the CPU rule decides.
    let topo = sysfs::load(&fixture_root("q35-zen")).expect("load");
    let why = topo.explain(bdf(A), bdf(C), &policy).expect("explain");
    assert_eq!(why.verdict.map_type, MapType::ThruHostBridge);
    assert!(why.to_string().contains("cpu_supports_p2pdma()"));
    assert!(why.fixes.is_empty());
}

#[test]
fn explain_on_unreadable_acs_and_vfs() {
    let policy = Policy::default();
    let topo = sysfs::load(&fixture_root("q35-nonroot")).expect("load");
    let why = topo.explain(bdf(A), bdf(B), &policy).expect("explain");
    assert_eq!(why.verdict.acs, PathAcs::Unknown);
    assert!(matches!(
        why.steps.iter().rev().nth(1),
        Some(Step::AcsUnreadable { .. })
    ));
    let fix = why.nearest_fix().expect("fix");
    assert!(matches!(fix.action, FixAction::ReadConfigSpace { .. }));
    assert_eq!(fix.would_be.map(|v| v.map_type), Some(MapType::BusAddr));

    let topo = sysfs::load(&fixture_root("sriov")).expect("load");
    let why = topo
        .explain(bdf("0000:01:00.1"), bdf("0000:01:00.2"), &policy)
        .expect("explain");
    let text = why.to_string();
    assert!(
        text.contains("a VF: its upstream bridge is its PF 0000:01:00.0's"),
        "{text}"
    );
    assert_eq!(why.verdict.distance, 2);
}

#[test]
fn islands_of_the_fixtures() {
    let topo = sysfs::load(&fixture_root("q35")).expect("load");
    let tops: Vec<String> = topo
        .islands()
        .expect("islands")
        .iter()
        .map(|i| i.top.to_string())
        .collect();
    // RP1's switch (A, B) and RP3's two-function device; C is alone below RP2.
    assert_eq!(tops, [RP1, RP3]);
    let topo = sysfs::load(&fixture_root("q35-acs-rp1")).expect("load");
    let islands = topo.islands().expect("islands");
    let tops: Vec<Bdf> = islands.iter().map(|i| i.top).collect();
    assert_eq!(
        tops,
        [bdf(RP3), bdf("0000:01:00.0")],
        "the switch, below RP1"
    );
    // The DGX-class box: three switches are islands (GPU, NIC + VFs, NVMe); the fourth
    // has ACS redirect on its downstream ports, and so has one port of the first.
    let topo = sysfs::load(&fixture_root("dgx")).expect("load");
    assert!(topo.functions().count() >= 100);
    let islands = topo.islands().expect("islands");
    let devices: Vec<usize> = islands.iter().map(|i| i.devices(&topo).count()).collect();
    // Two GPUs, two NICs with 8 VFs each, two NVMe; one GPU cut off by ACS redirect.
    assert_eq!(devices, [21, 22, 22]);
    assert!(!islands[0].contains(bdf("0000:19:00.0")));
    assert!(!islands[0].contains(bdf("0000:17:01.0")));
}
