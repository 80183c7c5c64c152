//! The precomputed fast path ([`Topology::verdict`], [`Topology::all_pairs`]) against
//! the kernel's plain walk ([`Topology::verdict_by_walk`], what `explain` records) on
//! random trees: every field of every verdict, every error, before and after ACS
//! changes; and on the generated 1,000-function fleet of the benches.

use dmaspace_pci::{
    AcsCtrl, AcsState, Allowlist, Bdf, CpuInfo, CpuVendor, HostBridgeId, PairVerdict, PciFunction,
    PcieKind, PciePortType, Policy, Topology, TopologyError, VerdictCache,
};
use proptest::prelude::*;

#[path = "support/fleet.rs"]
mod fleet;

/// One generated function: where it hangs and what it reads.
#[derive(Clone, Debug)]
struct Gen {
    /// `None`: on a root bus; else an earlier node's index (its upstream bridge).
    parent: Option<prop::sample::Index>,
    /// Make it a VF of an earlier non-VF node (then `parent` is informational only).
    vf_of: Option<prop::sample::Index>,
    /// For a root-bus function: which host bridge.
    hb: u8,
    acs: AcsState,
    pcie: PcieKind,
    ids: (u16, u16),
}

fn acs() -> impl Strategy<Value = AcsState> {
    prop_oneof![
        4 => Just(AcsState::Absent),
        4 => any::<u16>().prop_map(|c| AcsState::Control(AcsCtrl::from_bits_retain(c & 0x7f))),
        1 => Just(AcsState::Unknown),
    ]
}

fn pcie() -> impl Strategy<Value = PcieKind> {
    prop_oneof![
        2 => Just(PcieKind::NotPcie),
        6 => (0u8..11).prop_map(|t| PcieKind::Pcie(PciePortType::from_raw(t))),
        1 => Just(PcieKind::Unknown),
    ]
}

fn ids() -> impl Strategy<Value = (u16, u16)> {
    prop_oneof![
        Just((0x8086, 0x3c00)),
        Just((0x8086, 0x2030)),
        Just((0x8086, 0x09a2)),
        Just((0x1ae0, 0x0042)),
        Just((0x8086, 0x29c0)),
        Just((0x1b36, 0x0010)),
    ]
}

fn gen_node() -> impl Strategy<Value = Gen> {
    (
        prop::option::weighted(0.7, any::<prop::sample::Index>()),
        prop::option::weighted(0.2, any::<prop::sample::Index>()),
        0u8..3,
        acs(),
        pcie(),
        ids(),
    )
        .prop_map(|(parent, vf_of, hb, acs, pcie, ids)| Gen {
            parent,
            vf_of,
            hb,
            acs,
            pcie,
            ids,
        })
}

const HBS: [HostBridgeId; 3] = [
    HostBridgeId::new(0, 0),
    HostBridgeId::new(0, 0x80),
    HostBridgeId::new(0x10000, 0),
];

/// Builds a tree from generated nodes: a root-bus function sits at its host bridge's
/// root bus, slot `i + offset` (so 00.0 is there or not), a VF on its PF's bus
/// (functions 4 and up), any other function alone on bus `1 + i`.
fn make(nodes: &[Gen], offset: u8, zen: bool) -> Topology {
    let mut bdfs: Vec<Bdf> = Vec::new();
    let mut vf: Vec<bool> = Vec::new();
    let mut b = Topology::builder().cpu(if zen {
        CpuInfo::amd_zen()
    } else {
        CpuInfo::x86(CpuVendor::Intel, 6)
    });
    for (i, n) in nodes.iter().enumerate() {
        let parent = n.parent.filter(|_| i > 0).map(|p| p.index(i));
        let pf = n
            .vf_of
            .filter(|_| i > 0)
            .map(|p| p.index(i))
            .filter(|&p| !vf[p]);
        let hb = HBS[usize::from(n.hb)];
        let bdf = match (pf, parent) {
            (Some(p), _) => Bdf::new(bdfs[p].domain, bdfs[p].bus, i as u8 % 32, 4 + i as u8 / 32),
            (None, Some(p)) => Bdf::new(bdfs[p].domain, 1 + i as u8, 0, 0),
            (None, None) => {
                let slot = i as u8 + offset;
                Bdf::new(hb.domain, hb.bus, slot % 32, slot / 32)
            }
        };
        let mut f = PciFunction::new(bdf, n.ids.0, n.ids.1)
            .with_pcie(n.pcie)
            .with_acs(n.acs)
            .on_host_bridge(hb);
        if let Some(p) = parent {
            f = f.under(bdfs[p]);
        }
        if let Some(p) = pf {
            f = f.vf_of(bdfs[p]);
        }
        bdfs.push(bdf);
        vf.push(pf.is_some());
        b.push(f);
    }
    b.build().expect("generated tree builds")
}

fn policy(list: u8) -> Policy {
    Policy::new(match list {
        0 => Allowlist::current(),
        1 => Allowlist::linux_6_12(),
        _ => Allowlist::empty(),
    })
}

/// Every pair, both ways, and the matrix; `extra` are addresses not in the topology.
fn check_all(t: &Topology, pol: &Policy, extra: &[Bdf]) -> Result<(), TestCaseError> {
    let mut bdfs: Vec<Bdf> = t.functions().map(|f| f.bdf).collect();
    let all = t.all_pairs(pol);
    let mut first_err = None;
    for &p in &bdfs {
        for &c in &bdfs {
            let fast = t.verdict(p, c, pol);
            let walk = t.verdict_by_walk(p, c, pol);
            prop_assert_eq!(fast, walk, "{} -> {}", p, c);
            match (fast, &all) {
                (Ok(v), Ok(m)) => prop_assert_eq!(m.get(p, c), Some(PairVerdict::from(v))),
                (Err(e), _) => {
                    first_err.get_or_insert(e);
                }
                (Ok(_), Err(_)) => {}
            }
        }
    }
    prop_assert_eq!(all.as_ref().err().copied(), first_err);
    if let Ok(m) = &all {
        prop_assert_eq!(m.functions(), &bdfs[..]);
        prop_assert_eq!(m.iter().count(), bdfs.len() * bdfs.len());
        prop_assert_eq!(m.generation(), t.generation());
    }
    bdfs.extend_from_slice(extra);
    for &p in &bdfs {
        for &c in extra {
            prop_assert_eq!(t.verdict(p, c, pol), t.verdict_by_walk(p, c, pol));
            prop_assert_eq!(t.verdict(c, p, pol), t.verdict_by_walk(c, p, pol));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn fast_path_equals_the_walk(
        nodes in prop::collection::vec(gen_node(), 1..40),
        offset in 0u8..3,
        zen in any::<bool>(),
        list in 0u8..3,
        changes in prop::collection::vec((any::<prop::sample::Index>(), acs()), 0..6),
    ) {
        let mut t = make(&nodes, offset, zen);
        let pol = policy(list);
        let stranger = [Bdf::new(7, 7, 7, 7)];
        check_all(&t, &pol, &stranger)?;
        // ACS changes refresh the tables.
        let bdfs: Vec<Bdf> = t.functions().map(|f| f.bdf).collect();
        for (i, acs) in changes {
            t.set_acs(bdfs[i.index(bdfs.len())], acs).expect("known function");
            check_all(&t, &pol, &[])?;
        }
        // And so does the CPU (it is read at each question).
        t.set_cpu(if zen { CpuInfo::other() } else { CpuInfo::amd_zen() });
        check_all(&t, &pol, &[])?;
    }

    #[test]
    fn cache_serves_the_fast_path(
        nodes in prop::collection::vec(gen_node(), 1..30),
        list in 0u8..3,
        asks in prop::collection::vec((any::<prop::sample::Index>(), any::<prop::sample::Index>()), 1..200),
    ) {
        let t = make(&nodes, 0, false);
        let pol = policy(list);
        let bdfs: Vec<Bdf> = t.functions().map(|f| f.bdf).collect();
        let mut cache = VerdictCache::new();
        let mut distinct = std::collections::BTreeSet::new();
        for (i, j) in asks {
            let (p, c) = (bdfs[i.index(bdfs.len())], bdfs[j.index(bdfs.len())]);
            prop_assert_eq!(cache.verdict(&t, p, c, &pol), t.verdict_by_walk(p, c, &pol));
            distinct.insert((p, c));
        }
        prop_assert_eq!(cache.len(), distinct.len());
        prop_assert_eq!(cache.misses() as usize, distinct.len());
    }
}

#[test]
fn the_benches_fleet_agrees_with_the_walk() {
    for (seed, unknown) in [(1, false), (2, true)] {
        let t = fleet::fleet(1000, seed, unknown);
        let n = t.functions().count();
        assert!(n >= 1000, "{n} functions");
        let vfs = t.functions().filter(|f| f.physfn.is_some()).count();
        assert!(vfs > 100, "{vfs} VFs");
        for (pol, stride) in [(Policy::current(), 1), (Policy::linux_6_12(), 13)] {
            let m = t.all_pairs(&pol).expect("no cycle");
            let bdfs: Vec<Bdf> = t.functions().map(|f| f.bdf).collect();
            // Every pair (a sample under the second policy) against the fast single
            // verdict; a sample against the walk.
            let mut kinds = std::collections::BTreeMap::new();
            for (k, (p, c, v)) in m.iter().enumerate().step_by(stride) {
                let fast = t.verdict(p, c, &pol).expect("known");
                assert_eq!(v, PairVerdict::from(fast), "{p} -> {c}");
                *kinds.entry((v.map_type, v.acs)).or_insert(0usize) += 1;
                if k % (97 * stride) == 0 {
                    assert_eq!(t.verdict_by_walk(p, c, &pol), Ok(fast), "{p} -> {c}");
                }
            }
            assert_eq!(m.iter().count(), bdfs.len() * bdfs.len());
            // The fleet exercises every outcome.
            assert!(kinds.len() >= if unknown { 4 } else { 3 }, "{kinds:?}");
        }
    }
}

/// A PF whose parent is one of its own VFs: the VF's upstream bridge is the PF's
/// parent, itself, so the walk never ends. `build` accepts the tree (it follows the
/// VF's own parent); both paths refuse the pair the same way.
#[test]
fn a_chain_that_never_ends_is_the_same_error_on_both_paths() {
    let root = Bdf::new(0, 0, 1, 0);
    let pf = Bdf::new(0, 2, 0, 0);
    let vf = Bdf::new(0, 3, 0, 0);
    let ok = Bdf::new(0, 0, 2, 0);
    let t = Topology::builder()
        .function(PciFunction::new(root, 1, 1))
        .function(PciFunction::new(ok, 1, 1))
        .function(PciFunction::new(pf, 1, 2).under(vf))
        .function(PciFunction::new(vf, 1, 3).under(root).vf_of(pf))
        .build()
        .expect("the builder follows the VF's own parent");
    let pol = Policy::default();
    for p in [root, ok, pf, vf] {
        for c in [root, ok, pf, vf] {
            assert_eq!(
                t.verdict(p, c, &pol),
                t.verdict_by_walk(p, c, &pol),
                "{p} -> {c}"
            );
        }
    }
    assert_eq!(t.verdict(pf, ok, &pol), Err(TopologyError::Cycle(pf)));
    assert_eq!(t.verdict(ok, vf, &pol), Err(TopologyError::Cycle(vf)));
    assert_eq!(t.all_pairs(&pol).err(), Some(TopologyError::Cycle(pf)));
    assert!(t.verdict(root, ok, &pol).is_ok());
}
