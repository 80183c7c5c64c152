//! Property tests over random PCI trees: symmetry, the kernel's hop count, agreement
//! with a literal transliteration of `calc_map_type_and_dist()`, and a cache that
//! never changes an answer nor serves one across generations.

use dmaspace_pci::{
    AcsCtrl, AcsState, Allowlist, Bdf, CpuInfo, CpuVendor, HostBridgeId, MapType, PathAcs,
    PciFunction, PcieKind, PciePortType, Policy, Topology, VerdictCache,
};
use proptest::prelude::*;

#[derive(Clone, Debug)]
struct NodeGen {
    parent: Option<usize>,
    second_hb: bool,
    acs: AcsState,
    pcie: PcieKind,
    ids: (u16, u16),
    vf: bool,
}

fn acs_strategy() -> impl Strategy<Value = AcsState> {
    prop_oneof![
        4 => Just(AcsState::Absent),
        4 => any::<u16>().prop_map(|c| AcsState::Control(AcsCtrl::from_bits_retain(c & 0x7f))),
        1 => Just(AcsState::Unknown),
    ]
}

fn pcie_strategy() -> impl Strategy<Value = PcieKind> {
    prop_oneof![
        2 => Just(PcieKind::NotPcie),
        6 => (0u8..11).prop_map(|t| PcieKind::Pcie(PciePortType::from_raw(t))),
        1 => Just(PcieKind::Unknown),
    ]
}

fn ids_strategy() -> impl Strategy<Value = (u16, u16)> {
    prop_oneof![
        Just((0x8086, 0x3c00)),
        Just((0x8086, 0x2030)),
        Just((0x8086, 0x09a2)),
        Just((0x1ae0, 0x0042)),
        Just((0x8086, 0x29c0)),
        Just((0x1b36, 0x0010)),
    ]
}

fn tree_strategy() -> impl Strategy<Value = (Vec<NodeGen>, bool, u8)> {
    let node = (
        any::<prop::sample::Index>(),
        any::<bool>(),
        any::<bool>(),
        acs_strategy(),
        pcie_strategy(),
        ids_strategy(),
        any::<u8>(),
    );
    (prop::collection::vec(node, 1..10), any::<bool>(), 0u8..3).prop_map(|(raw, zen, list)| {
        let mut nodes: Vec<NodeGen> = Vec::new();
        for (i, (idx, root, second_hb, acs, pcie, ids, vfsel)) in raw.into_iter().enumerate() {
            let parent = if i == 0 || root {
                None
            } else {
                Some(idx.index(i))
            };
            // A VF only when the chosen parent-slot function is a non-VF: use it as PF.
            let vf = i > 0 && vfsel % 5 == 0 && parent.is_some_and(|p| !nodes[p].vf);
            nodes.push(NodeGen {
                parent,
                second_hb,
                acs,
                pcie,
                ids,
                vf,
            });
        }
        (nodes, zen, list)
    })
}

fn bdf_of(nodes: &[NodeGen], i: usize) -> Bdf {
    let hb_bus = if nodes[i].second_hb { 0x80 } else { 0 };
    match nodes[i].parent {
        None => Bdf::new(0, hb_bus, i as u8, 0),
        Some(_) => Bdf::new(0, hb_bus + 1 + i as u8, 0, 0),
    }
}

fn make(nodes: &[NodeGen], zen: bool) -> Topology {
    let mut b = Topology::builder().cpu(if zen {
        CpuInfo::amd_zen()
    } else {
        CpuInfo::x86(CpuVendor::Intel, 6)
    });
    for (i, n) in nodes.iter().enumerate() {
        let bdf = bdf_of(nodes, i);
        let mut f = PciFunction::new(bdf, n.ids.0, n.ids.1)
            .with_pcie(n.pcie)
            .with_acs(n.acs);
        f = f.on_host_bridge(HostBridgeId::new(0, if n.second_hb { 0x80 } else { 0 }));
        match (n.parent, n.vf) {
            (Some(p), true) => f = f.vf_of(bdf_of(nodes, p)),
            (Some(p), false) => f = f.under(bdf_of(nodes, p)),
            (None, _) => {}
        }
        b.push(f);
    }
    b.build().expect("generated tree builds")
}

fn policy(list: u8) -> Policy {
    let allowlist = match list {
        0 => Allowlist::current(),
        1 => Allowlist::linux_6_12(),
        _ => Allowlist::empty(),
    };
    Policy::new(allowlist)
}

/// `calc_map_type_and_dist()` transliterated: pointers are BDFs, `goto`s are flags.
/// Returns (map type, distance) for trees whose ACS is fully known.
fn reference(t: &Topology, provider: Bdf, client: Bdf, pol: &Policy) -> (MapType, i64) {
    let up = |d: Bdf| t.upstream_bridge(d).expect("known");
    let acs_redir = |d: Bdf| {
        t.function(d)
            .and_then(|f| f.acs.redirects())
            .unwrap_or(false)
    };
    let mut map_type = MapType::ThruHostBridge;
    let (mut a, b) = (Some(provider), client);
    let mut acs_cnt = 0;
    let (mut dist_a, mut dist_b) = (0i64, 0i64);
    let mut found = false;
    while let Some(an) = a {
        dist_b = 0;
        if acs_redir(an) {
            acs_cnt += 1;
        }
        let mut bb = Some(b);
        while let Some(bn) = bb {
            if an == bn {
                found = true;
                break;
            }
            bb = up(bn);
            dist_b += 1;
        }
        if found {
            break;
        }
        a = up(an);
        dist_a += 1;
    }
    let dist = dist_a + dist_b;
    if found {
        let a = a.expect("found");
        let mut bb = Some(b);
        while let Some(bn) = bb {
            if a == bn {
                break;
            }
            if acs_redir(bn) {
                acs_cnt += 1;
            }
            bb = up(bn);
        }
        if acs_cnt == 0 {
            return (MapType::BusAddr, dist);
        }
    }
    let cpu = t.cpu();
    let host_dev = |hb: HostBridgeId| {
        let root = t
            .functions()
            .filter(|f| f.host_bridge == hb && f.bdf.bus == hb.bus && up(f.bdf).is_none())
            .min_by_key(|f| (f.physfn.is_some(), f.bdf.devfn()))?;
        (root.bdf.devfn() == 0 || root.pcie.is_root_port()).then_some(root)
    };
    let wl = |hb: HostBridgeId, same: bool| {
        let Some(root) = host_dev(hb) else {
            return false;
        };
        for e in pol.allowlist.entries() {
            if e.vendor != root.vendor || !e.device.matches(root.device) {
                continue;
            }
            if e.flags.bits() & 1 != 0 && !same {
                return false;
            }
            return true;
        }
        false
    };
    let ha = t.function(provider).expect("p").host_bridge;
    let hb = t.function(client).expect("c").host_bridge;
    let allowed = if ha == hb {
        wl(ha, true)
    } else {
        wl(ha, false) && wl(hb, false)
    };
    if !cpu.supports_p2pdma() && !allowed {
        map_type = MapType::NotSupported;
    }
    (map_type, dist)
}

fn all_known(t: &Topology) -> bool {
    t.functions()
        .all(|f| f.acs != AcsState::Unknown && f.pcie != PcieKind::Unknown)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn verdict_is_symmetric((nodes, zen, list) in tree_strategy()) {
        let t = make(&nodes, zen);
        let pol = policy(list);
        for p in t.functions() {
            for c in t.functions() {
                let v = t.verdict(p.bdf, c.bdf, &pol).expect("v");
                let w = t.verdict(c.bdf, p.bdf, &pol).expect("w");
                prop_assert_eq!((v.map_type, v.distance, v.acs, v.common_upstream), (w.map_type, w.distance, w.acs, w.common_upstream));
            }
        }
    }

    #[test]
    fn distance_is_the_walks_hop_count((nodes, zen, list) in tree_strategy()) {
        let t = make(&nodes, zen);
        let pol = policy(list);
        let chain = |d: Bdf| {
            let mut v = vec![d];
            while let Some(u) = t.upstream_bridge(*v.last().expect("non-empty")).expect("ub") {
                v.push(u);
            }
            v
        };
        for p in t.functions() {
            for c in t.functions() {
                let v = t.verdict(p.bdf, c.bdf, &pol).expect("v");
                let (pc, cc) = (chain(p.bdf), chain(c.bdf));
                let want = pc
                    .iter()
                    .enumerate()
                    .find_map(|(i, a)| cc.iter().position(|b| b == a).map(|j| i + j))
                    .unwrap_or(pc.len() + cc.len());
                prop_assert_eq!(v.distance as usize, want);
                prop_assert_eq!(v.kernel_distance() == -1, v.map_type == MapType::NotSupported);
                if v.map_type == MapType::BusAddr {
                    prop_assert_eq!(v.acs, PathAcs::Known);
                    prop_assert!(v.common_upstream.is_some());
                }
            }
        }
    }

    #[test]
    fn matches_the_kernel_transliteration((nodes, zen, list) in tree_strategy()) {
        let t = make(&nodes, zen);
        let pol = policy(list);
        let known = all_known(&t);
        for p in t.functions() {
            for c in t.functions() {
                let v = t.verdict(p.bdf, c.bdf, &pol).expect("v");
                if known {
                    prop_assert_eq!(v.acs, PathAcs::Known);
                }
                if v.acs == PathAcs::Known {
                    let (m, d) = reference(&t, p.bdf, c.bdf, &pol);
                    prop_assert_eq!((v.map_type, i64::from(v.distance)), (m, d), "{} -> {}", p.bdf, c.bdf);
                } else {
                    prop_assert_eq!(v.map_type, MapType::NotSupported);
                }
            }
        }
    }

    #[test]
    fn cache_never_changes_an_answer_nor_crosses_generations(
        (nodes, zen, list) in tree_strategy(),
        ops in prop::collection::vec((0u8..4, any::<prop::sample::Index>(), any::<prop::sample::Index>(), any::<u16>()), 1..40),
    ) {
        let mut t = make(&nodes, zen);
        let pol = policy(list);
        let other = policy((list + 1) % 3);
        let bdfs: Vec<Bdf> = t.functions().map(|f| f.bdf).collect();
        let mut cache = VerdictCache::new();
        for (op, i, j, bits) in ops {
            let (p, c) = (bdfs[i.index(bdfs.len())], bdfs[j.index(bdfs.len())]);
            match op {
                0 | 1 => {
                    let pol = if op == 0 { &pol } else { &other };
                    let cached = cache.verdict(&t, p, c, pol).expect("cached");
                    prop_assert_eq!(cached, t.verdict(p, c, pol).expect("direct"));
                    prop_assert_eq!(cached.generation, t.generation());
                    prop_assert_eq!(cache.generation(), Some(t.generation()));
                }
                2 => {
                    let g = t.generation();
                    t.set_acs(p, AcsState::Control(AcsCtrl::from_bits_retain(bits & 0x7f))).expect("set");
                    prop_assert_ne!(g, t.generation());
                }
                _ => {
                    let g = t.generation();
                    t.set_cpu(if bits % 2 == 0 { CpuInfo::amd_zen() } else { CpuInfo::other() });
                    prop_assert_ne!(g, t.generation());
                }
            }
        }
    }
}

#[test]
fn a_clone_keeps_its_generation_until_it_changes() {
    let t = make(
        &[NodeGen {
            parent: None,
            second_hb: false,
            acs: AcsState::Absent,
            pcie: PcieKind::NotPcie,
            ids: (1, 1),
            vf: false,
        }],
        false,
    );
    let mut u = t.clone();
    assert_eq!(t.generation(), u.generation());
    let mut cache = VerdictCache::new();
    let b = Bdf::new(0, 0, 0, 0);
    let before = cache.verdict(&t, b, b, &Policy::default()).expect("v");
    assert_eq!(before.map_type, MapType::BusAddr);
    u.set_acs(b, AcsState::Control(AcsCtrl::RR)).expect("set");
    let after = cache.verdict(&u, b, b, &Policy::default()).expect("v");
    assert_eq!(after.map_type, MapType::NotSupported);
    assert_eq!(after.generation, u.generation());
    // Back to the old snapshot: recomputed, not the clone's answer.
    assert_eq!(
        cache
            .verdict(&t, b, b, &Policy::default())
            .expect("v")
            .map_type,
        MapType::BusAddr
    );
}
