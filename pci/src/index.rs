//! The precomputed tables behind [`Topology::verdict`](crate::Topology::verdict) and [`Topology::all_pairs`](crate::Topology::all_pairs).
//!
//! `calc_map_type_and_dist()` walks the provider's chain of upstream bridges and, for
//! each node, searches the client's chain: O(depth²) per pair, with a pointer chase per
//! step. The answer only depends on a few facts that do not change between questions,
//! so a [`Topology`](crate::Topology) keeps them, computed once when it is built (and again when its ACS
//! changes):
//!
//! - per function: its `pci_upstream_bridge()` as a dense index, its depth (hops to the
//!   top of its chain), its host bridge, and the nearest node at or above it (itself
//!   first) whose ACS redirects, and the nearest one whose ACS is unknown;
//! - per host bridge: the kernel's `pci_host_bridge_dev()` (the first function on its
//!   root bus, and whether it qualifies);
//! - the forest of upstream chains in preorder, so that the functions below one bridge
//!   are one contiguous range.
//!
//! From these, the common upstream bridge is the lowest common ancestor of the two
//! functions in that forest (the provider's walk stops at the first of its nodes that is
//! on the client's chain: the deepest shared one), the distance is the two depths less
//! twice the ancestor's, and "some node on the walk redirects" is one comparison per
//! side: the nearest redirecting node at or above the provider is on the walk iff it is
//! not above the common ancestor (the provider's walk includes the ancestor), the
//! client's iff it is strictly below it. The first of them in the kernel's order is the
//! provider's, if any. `tests/topology_fast_path.rs` checks all of it against the plain
//! walk ([`Topology::explain`](crate::Topology::explain)) on random trees, and `tests/kernel_parity.rs` against
//! Linux.

use alloc::collections::BTreeMap;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use super::bdf::{Bdf, HostBridgeId};
use super::error::TopologyError;
use super::function::PciFunction;
use super::registers::PcieKind;

/// "None" for a dense index.
pub(crate) const NONE: u32 = u32::MAX;

/// What the classification needs of one function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Node {
    /// `pci_upstream_bridge()` as a dense index, [`NONE`] on a root bus.
    pub up: u32,
    /// Hops from the function to the top of its chain (the chain's length less one);
    /// [`NONE`] if the chain never ends (a cycle through a VF's PF).
    pub depth: u32,
    /// Dense index of its host bridge.
    pub hb: u32,
    /// The nearest node at or above it (itself first) whose ACS redirects.
    pub redirect: u32,
    /// That node's depth plus one; 0 when there is none.
    pub redirect_d1: u32,
    /// The nearest node at or above it whose ACS is unknown.
    pub unknown: u32,
    /// That node's depth plus one; 0 when there is none.
    pub unknown_d1: u32,
}

/// What `__host_bridge_whitelist()` needs of one host bridge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct HbInfo {
    /// The host bridge.
    pub id: HostBridgeId,
    /// The first function on its root bus in kernel scan order, whatever it is.
    pub first: u32,
    /// Its (vendor, device).
    pub ids: (u16, u16),
    /// `pci_host_bridge_dev()`: that function if it is devfn 00.0 or a Root Port.
    pub dev: u32,
    /// The first function is not 00.0 and its PCIe capability was unreadable.
    pub unknown: bool,
}

/// The precomputed tables of one [`Topology`](crate::Topology).
#[derive(Clone, Default)]
pub(crate) struct Index {
    /// Dense index → packed address (sorted: the [`Bdf`] order).
    keys: Vec<u64>,
    /// Dense index → address.
    pub bdfs: Vec<Bdf>,
    /// Dense index → node.
    pub nodes: Vec<Node>,
    /// Dense host-bridge index → host bridge (sorted by id).
    pub hbs: Vec<HbInfo>,
    /// Preorder position → dense index, over the forest of upstream chains (roots and
    /// children in [`Bdf`] order); functions on a cycle are left out.
    pub pre: Vec<u32>,
    /// Dense index → its preorder position ([`NONE`] on a cycle).
    pub pos: Vec<u32>,
    /// Dense index → the end (exclusive) of its subtree's preorder range.
    pub end: Vec<u32>,
    /// The first function, in [`Bdf`] order, whose chain never ends.
    pub first_cyclic: Option<Bdf>,
}

impl fmt::Debug for Index {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Index")
            .field("functions", &self.bdfs.len())
            .field("host_bridges", &self.hbs.len())
            .finish_non_exhaustive()
    }
}

/// The address as one integer, in [`Bdf`] order.
#[inline]
const fn key(b: Bdf) -> u64 {
    ((b.domain as u64) << 24)
        | ((b.bus as u64) << 16)
        | ((b.device as u64) << 8)
        | b.function as u64
}

/// Position of `k` in the sorted `keys` (a binary search without unpredictable branches).
#[inline]
fn find(keys: &[u64], k: u64) -> Option<usize> {
    let mut size = keys.len();
    if size == 0 {
        return None;
    }
    let mut base = 0usize;
    while size > 1 {
        let half = size / 2;
        let mid = base + half;
        base = if keys[mid] <= k { mid } else { base };
        size -= half;
    }
    (keys[base] == k).then_some(base)
}

fn to_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(NONE)
}

impl Index {
    /// The tables of a checked tree (every parent and PF present).
    pub(crate) fn new(
        functions: &BTreeMap<Bdf, PciFunction>,
        host_bridges: &BTreeMap<HostBridgeId, super::bdf::HostBridge>,
    ) -> Self {
        let n = functions.len();
        let bdfs: Vec<Bdf> = functions.keys().copied().collect();
        let keys: Vec<u64> = bdfs.iter().map(|&b| key(b)).collect();
        let hb_ids: Vec<HostBridgeId> = host_bridges.keys().copied().collect();
        let id_of = |b: Bdf| find(&keys, key(b)).map_or(NONE, to_u32);
        let mut nodes: Vec<Node> = functions
            .values()
            .map(|f| {
                // pci_upstream_bridge(): a VF uses its PF's.
                let base = f.physfn.and_then(|pf| functions.get(&pf)).unwrap_or(f);
                Node {
                    up: base.parent.map_or(NONE, id_of),
                    depth: NONE,
                    hb: hb_ids.binary_search(&f.host_bridge).map_or(NONE, to_u32),
                    redirect: NONE,
                    redirect_d1: 0,
                    unknown: NONE,
                    unknown_d1: 0,
                }
            })
            .collect();

        // Depths, bottom-up along each chain, marking chains that never end.
        const TODO: u8 = 0;
        const ON_PATH: u8 = 1;
        const DONE: u8 = 2;
        const CYCLIC: u8 = 3;
        let mut state = vec![TODO; n];
        let mut path: Vec<usize> = Vec::new();
        for start in 0..n {
            let mut cur = start;
            let top_depth = loop {
                match state[cur] {
                    DONE => break Some(nodes[cur].depth),
                    ON_PATH | CYCLIC => break None,
                    _ => {}
                }
                state[cur] = ON_PATH;
                path.push(cur);
                match nodes[cur].up {
                    NONE => break Some(NONE), // a root: depth 0 below
                    up => cur = up as usize,
                }
            };
            match top_depth {
                Some(mut d) => {
                    // `d` is the depth of the node above the last one pushed.
                    while let Some(i) = path.pop() {
                        d = d.wrapping_add(1);
                        nodes[i].depth = d;
                        state[i] = DONE;
                    }
                }
                None => {
                    for i in path.drain(..) {
                        state[i] = CYCLIC;
                    }
                }
            }
        }
        let first_cyclic = (0..n).find(|&i| state[i] == CYCLIC).map(|i| bdfs[i]);

        // The forest in preorder.
        let mut children: Vec<Vec<u32>> = vec![Vec::new(); n];
        let mut roots = Vec::new();
        for (i, node) in nodes.iter().enumerate() {
            if node.depth == NONE {
                continue;
            }
            match node.up {
                NONE => roots.push(to_u32(i)),
                up => children[up as usize].push(to_u32(i)),
            }
        }
        let mut pre = Vec::with_capacity(n);
        let mut pos = vec![NONE; n];
        let mut end = vec![NONE; n];
        let mut stack: Vec<(u32, usize)> = Vec::new();
        for &r in &roots {
            pos[r as usize] = to_u32(pre.len());
            pre.push(r);
            stack.push((r, 0));
            while let Some(top) = stack.last_mut() {
                let (node, next) = *top;
                if let Some(&child) = children[node as usize].get(next) {
                    top.1 += 1;
                    pos[child as usize] = to_u32(pre.len());
                    pre.push(child);
                    stack.push((child, 0));
                } else {
                    end[node as usize] = to_u32(pre.len());
                    stack.pop();
                }
            }
        }

        // Host bridges: the first function on each root bus, in kernel scan order
        // (physical functions by devfn, then VFs by devfn; the first in Bdf order on a tie).
        let mut hbs: Vec<HbInfo> = hb_ids
            .iter()
            .map(|&id| HbInfo {
                id,
                first: NONE,
                ids: (0, 0),
                dev: NONE,
                unknown: false,
            })
            .collect();
        let mut best: Vec<Option<(bool, u8)>> = vec![None; hbs.len()];
        for (i, f) in functions.values().enumerate() {
            let h = nodes[i].hb;
            if h == NONE || nodes[i].up != NONE || f.bdf.bus != f.host_bridge.bus {
                continue;
            }
            let k = (f.physfn.is_some(), f.bdf.devfn());
            let slot = &mut best[h as usize];
            if slot.is_none_or(|b| k < b) {
                *slot = Some(k);
                hbs[h as usize].first = to_u32(i);
            }
        }
        for h in &mut hbs {
            if h.first == NONE {
                continue;
            }
            let f = &functions[&bdfs[h.first as usize]];
            h.ids = (f.vendor, f.device);
            if f.bdf.devfn() == 0 || f.pcie.is_root_port() {
                h.dev = h.first;
            } else if f.pcie == PcieKind::Unknown {
                h.unknown = true;
            }
        }

        let mut index = Self {
            keys,
            bdfs,
            nodes,
            hbs,
            pre,
            pos,
            end,
            first_cyclic,
        };
        index.refresh_acs(functions);
        index
    }

    /// Recomputes the nearest redirecting / unknown node of every function (after an
    /// ACS change). Parents come before children in preorder.
    pub(crate) fn refresh_acs(&mut self, functions: &BTreeMap<Bdf, PciFunction>) {
        let acs: Vec<Option<bool>> = functions.values().map(|f| f.acs.redirects()).collect();
        for &i in &self.pre {
            let i = i as usize;
            let node = self.nodes[i];
            let (mut r, mut rd1, mut u, mut ud1) = match node.up {
                NONE => (NONE, 0, NONE, 0),
                up => {
                    let p = &self.nodes[up as usize];
                    (p.redirect, p.redirect_d1, p.unknown, p.unknown_d1)
                }
            };
            match acs[i] {
                Some(true) => (r, rd1) = (to_u32(i), node.depth + 1),
                None => (u, ud1) = (to_u32(i), node.depth + 1),
                Some(false) => {}
            }
            let node = &mut self.nodes[i];
            (
                node.redirect,
                node.redirect_d1,
                node.unknown,
                node.unknown_d1,
            ) = (r, rd1, u, ud1);
        }
    }

    /// Number of functions.
    pub(crate) fn len(&self) -> usize {
        self.bdfs.len()
    }

    /// The dense index of `bdf`.
    #[inline]
    pub(crate) fn id(&self, bdf: Bdf) -> Option<usize> {
        find(&self.keys, key(bdf))
    }

    /// The dense index of `bdf`, whose upstream chain must end: the errors of the
    /// kernel walk's `chain()`.
    #[inline]
    pub(crate) fn walkable(&self, bdf: Bdf) -> Result<usize, TopologyError> {
        let i = self.id(bdf).ok_or(TopologyError::UnknownFunction(bdf))?;
        if self.nodes[i].depth == NONE {
            return Err(TopologyError::Cycle(bdf));
        }
        Ok(i)
    }

    /// The lowest common ancestor of two walkable functions and its depth, if they
    /// share a chain.
    #[inline]
    #[expect(
        clippy::cast_possible_truncation,
        reason = "p and c index the node table, whose indices are u32 by construction (`to_u32`)"
    )]
    pub(crate) fn common(&self, p: usize, c: usize) -> Option<(usize, u32)> {
        let nodes = &self.nodes;
        let (mut a, mut b) = (p as u32, c as u32);
        let (mut da, mut db) = (nodes[p].depth, nodes[c].depth);
        while da > db {
            a = nodes[a as usize].up;
            da -= 1;
        }
        while db > da {
            b = nodes[b as usize].up;
            db -= 1;
        }
        // Equal depths: both reach a root, and then NONE, together.
        while a != b {
            a = nodes[a as usize].up;
            b = nodes[b as usize].up;
            if a == NONE {
                return None;
            }
            da -= 1;
        }
        Some((a as usize, da))
    }

    /// The host bridge at dense index `h`.
    pub(crate) fn hb(&self, h: u32) -> Option<&HbInfo> {
        self.hbs.get(h as usize)
    }

    /// The host bridge `id`.
    pub(crate) fn hb_by_id(&self, id: HostBridgeId) -> Option<&HbInfo> {
        self.hbs
            .binary_search_by_key(&id, |h| h.id)
            .ok()
            .map(|i| &self.hbs[i])
    }
}

/// The first node on the kernel's ACS walk among the two nearest candidates: the
/// provider's nearest is on the walk iff it is at or below the common ancestor (depth
/// `l`), the client's iff strictly below. Depths are given plus one (0: none).
#[inline]
pub(crate) const fn first_on_walk(p: u32, p_d1: u32, c: u32, c_d1: u32, l: u32) -> u32 {
    if p_d1 > l {
        p
    } else if c_d1 > l + 1 {
        c
    } else {
        NONE
    }
}
