//! Every ordered pair at once: [`Topology::all_pairs`].

use alloc::vec::Vec;

use super::allowlist::Policy;
use super::bdf::Bdf;
use super::classify::Tri;
use super::error::TopologyError;
use super::index::NONE;
use super::tree::Topology;
use super::verdict::{MapType, PathAcs, Verdict};

/// What the kernel reports for one pair (`pci_p2pdma_distance()` and the map type), and
/// whether it is known for sure: the part of a [`Verdict`] that [`Topology::all_pairs`]
/// keeps for every pair.
///
/// ```
/// use dmaspace_pci::{Bdf, MapType, PairVerdict, PathAcs, PciFunction, Policy, Topology};
/// let a = Bdf::new(0, 0, 3, 0);
/// let topo = Topology::builder().function(PciFunction::new(a, 1, 1)).build()?;
/// let v = PairVerdict::from(topo.verdict(a, a, &Policy::default())?);
/// assert_eq!(v, PairVerdict { map_type: MapType::BusAddr, distance: 0, acs: PathAcs::Known });
/// assert_eq!(v.kernel_distance(), 0);
/// # Ok::<(), dmaspace_pci::TopologyError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PairVerdict {
    /// The map type ([`Verdict::map_type`]).
    pub map_type: MapType,
    /// The hop count ([`Verdict::distance`]).
    pub distance: u32,
    /// Whether it is the kernel's answer for sure ([`Verdict::acs`]).
    pub acs: PathAcs,
}

impl PairVerdict {
    /// What `pci_p2pdma_distance()` returns: -1 iff not supported, else the distance.
    ///
    /// ```
    /// use dmaspace_pci::{MapType, PairVerdict, PathAcs};
    /// let v = PairVerdict { map_type: MapType::NotSupported, distance: 4, acs: PathAcs::Known };
    /// assert_eq!(v.kernel_distance(), -1);
    /// ```
    #[must_use]
    pub fn kernel_distance(&self) -> i32 {
        match self.map_type {
            MapType::NotSupported => -1,
            _ => i32::try_from(self.distance).unwrap_or(i32::MAX),
        }
    }
}

impl From<Verdict> for PairVerdict {
    fn from(v: Verdict) -> Self {
        Self {
            map_type: v.map_type,
            distance: v.distance,
            acs: v.acs,
        }
    }
}

/// The verdicts of every ordered pair of one topology snapshot under one policy; see
/// [`Topology::all_pairs`].
///
/// ```
/// use dmaspace_pci::{Bdf, MapType, PciFunction, Policy, Topology};
/// let rp = Bdf::new(0, 0, 2, 0);
/// let (d0, d1) = (Bdf::new(0, 1, 0, 0), Bdf::new(0, 1, 0, 1));
/// let topo = Topology::builder()
///     .function(PciFunction::new(rp, 1, 1))
///     .function(PciFunction::new(d0, 1, 2).under(rp))
///     .function(PciFunction::new(d1, 1, 2).under(rp))
///     .build()?;
/// let all = topo.all_pairs(&Policy::default())?;
/// assert_eq!(all.functions(), [rp, d0, d1]);
/// assert_eq!(all.iter().count(), 9);
/// assert_eq!(all.get(d0, d1).map(|v| v.map_type), Some(MapType::BusAddr));
/// assert_eq!(all.generation(), topo.generation());
/// # Ok::<(), dmaspace_pci::TopologyError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PairMatrix {
    /// The functions, in [`Bdf`] order.
    functions: Vec<Bdf>,
    /// Function (dense index) → its column.
    column: Vec<u32>,
    /// Row per provider in [`Bdf`] order; columns in preorder of the upstream forest.
    entries: Vec<PairVerdict>,
    generation: u64,
}

impl PairMatrix {
    /// The functions, in [`Bdf`] order.
    ///
    /// See [`PairMatrix`].
    #[must_use]
    pub fn functions(&self) -> &[Bdf] {
        &self.functions
    }

    /// The [`Topology::generation`] it was computed on.
    ///
    /// See [`PairMatrix`].
    #[must_use]
    pub const fn generation(&self) -> u64 {
        self.generation
    }

    /// The verdict for (provider, client); `None` if either is not in the topology.
    ///
    /// See [`PairMatrix`].
    #[must_use]
    pub fn get(&self, provider: Bdf, client: Bdf) -> Option<PairVerdict> {
        let p = self.functions.binary_search(&provider).ok()?;
        let c = self.functions.binary_search(&client).ok()?;
        self.at(p, c)
    }

    fn at(&self, p: usize, c: usize) -> Option<PairVerdict> {
        let n = self.functions.len();
        let col = *self.column.get(c)? as usize;
        self.entries.get(p * n + col).copied()
    }

    /// Every (provider, client, verdict), providers then clients in [`Bdf`] order.
    ///
    /// See [`PairMatrix`].
    pub fn iter(&self) -> impl Iterator<Item = (Bdf, Bdf, PairVerdict)> + '_ {
        let n = self.functions.len();
        (0..n).flat_map(move |p| {
            (0..n).filter_map(move |c| Some((self.functions[p], self.functions[c], self.at(p, c)?)))
        })
    }
}

impl Topology {
    /// The verdict of every ordered pair (provider, client), as [`Topology::verdict`]
    /// gives it, in one pass: what a fleet manager or the CLI's matrix needs.
    ///
    /// For each provider, the functions below each bridge of its chain are one
    /// contiguous range of the upstream forest in preorder, so every client in it has
    /// that bridge as its common upstream bridge; clients in other trees have none.
    /// Each client then costs a few loads and compares (its depth, its nearest
    /// redirecting and unknown-ACS nodes, its host bridge), and the host-bridge
    /// decisions are taken once per pair of host bridges. About 1,000 times 1,000
    /// pairs take a few milliseconds (`benches/topology.rs`).
    ///
    /// # Errors
    /// [`TopologyError::Cycle`] naming the first function (in [`Bdf`] order) whose
    /// upstream chain never ends, as asking [`Topology::verdict`] pair by pair would.
    ///
    /// See [`PairMatrix`].
    pub fn all_pairs(&self, policy: &Policy) -> Result<PairMatrix, TopologyError> {
        let ix = &self.index;
        if let Some(b) = ix.first_cyclic {
            return Err(TopologyError::Cycle(b));
        }
        let n = ix.len();
        // The clients' facts, in preorder.
        let node_at = |q: &u32| ix.nodes[*q as usize];
        let depth: Vec<u32> = ix.pre.iter().map(|q| node_at(q).depth).collect();
        let hb: Vec<u32> = ix.pre.iter().map(|q| node_at(q).hb).collect();
        let redirect_d1: Vec<u32> = ix.pre.iter().map(|q| node_at(q).redirect_d1).collect();
        let unknown_d1: Vec<u32> = ix.pre.iter().map(|q| node_at(q).unknown_d1).collect();

        // A route through the host bridge, per pair of host bridges.
        let hbn = ix.hbs.len();
        let cpu_allows = self.cpu.supports_p2pdma();
        let mut thru: Vec<(MapType, PathAcs)> = Vec::with_capacity(hbn * hbn);
        for hp in 0..hbn {
            for hc in 0..hbn {
                thru.push(if cpu_allows {
                    (MapType::ThruHostBridge, PathAcs::Known)
                } else {
                    match self.hb_tri(to_u32(hp), to_u32(hc), policy) {
                        Tri::Yes => (MapType::ThruHostBridge, PathAcs::Known),
                        Tri::No => (MapType::NotSupported, PathAcs::Known),
                        Tri::Unknown(_) => (MapType::NotSupported, PathAcs::Unknown),
                    }
                });
            }
        }

        let mut entries: Vec<PairVerdict> = Vec::with_capacity(n * n);
        let mut chain: Vec<u32> = Vec::new();
        for p in 0..n {
            let np = ix.nodes[p];
            let thru_row = &thru[np.hb as usize * hbn..][..hbn];
            chain.clear();
            let mut a = to_u32(p);
            while a != NONE {
                chain.push(a);
                a = ix.nodes[a as usize].up;
            }
            let dp = np.depth;
            let root = chain[chain.len() - 1] as usize;
            let pos = |a: u32| ix.pos[a as usize] as usize;
            let end = |a: u32| ix.end[a as usize] as usize;

            // No common upstream bridge: both whole chains, through the host bridge.
            let outside = |q: usize| {
                let (map_type, acs) = thru_row[hb[q] as usize];
                PairVerdict {
                    map_type,
                    distance: (dp + 1).saturating_add(depth[q] + 1),
                    acs,
                }
            };
            // Common upstream bridge `k` hops above the provider, at depth `l`.
            let below = |k: usize, range: core::ops::Range<usize>, out: &mut Vec<PairVerdict>| {
                let k = to_u32(k);
                let l = dp - k;
                let provider_redirects = np.redirect_d1 > l;
                let provider_unknown = np.unknown_d1 > l;
                out.extend(range.map(|q| {
                    let distance = k.saturating_add(depth[q] - l);
                    let (map_type, acs) = if provider_redirects || redirect_d1[q] > l + 1 {
                        thru_row[hb[q] as usize]
                    } else if provider_unknown || unknown_d1[q] > l + 1 {
                        (MapType::NotSupported, PathAcs::Unknown)
                    } else {
                        (MapType::BusAddr, PathAcs::Known)
                    };
                    PairVerdict {
                        map_type,
                        distance,
                        acs,
                    }
                }));
            };

            entries.extend((0..ix.pos[root] as usize).map(outside));
            // Down the chain: what lies before each node's subtree, inside its parent's.
            for k in (1..chain.len()).rev() {
                below(k, pos(chain[k])..pos(chain[k - 1]), &mut entries);
            }
            below(0, pos(chain[0])..end(chain[0]), &mut entries);
            // Up the chain: what lies after each node's subtree, inside its parent's.
            for k in 1..chain.len() {
                below(k, end(chain[k - 1])..end(chain[k]), &mut entries);
            }
            entries.extend((ix.end[root] as usize..n).map(outside));
        }
        debug_assert_eq!(entries.len(), n * n);
        Ok(PairMatrix {
            functions: ix.bdfs.clone(),
            column: ix.pos.clone(),
            entries,
            generation: self.generation,
        })
    }
}

fn to_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(NONE)
}
