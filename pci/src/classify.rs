//! `calc_map_type_and_dist()`, `pci_p2pdma_distance_many()` and
//! `pci_p2pmem_find_many()`, rule by rule.

use alloc::vec::Vec;

use super::allowlist::{AllowFlags, AllowlistEntry, Policy};
use super::bdf::{Bdf, HostBridgeId};
use super::error::TopologyError;
use super::index::{self, NONE};
use super::registers::AcsState;
use super::step::{HostBridgeCheck, Side, Step};
use super::tree::{Topology, host_bridge_dev_of};
use super::verdict::{MapType, PathAcs, Verdict};

/// The result of [`Topology::distance_many`].
///
/// ```
/// use dmaspace_pci::{Bdf, PciFunction, Policy, Topology};
/// let a = Bdf::new(0, 0, 3, 0);
/// let topo = Topology::builder().function(PciFunction::new(a, 1, 1)).build()?;
/// let d = topo.distance_many(a, &[], &Policy::default())?;
/// assert_eq!(d.kernel_distance(), -1);
/// # Ok::<(), dmaspace_pci::TopologyError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DistanceMany {
    /// The summed distance; `None` where the kernel returns -1.
    pub distance: Option<u32>,
    /// `Unknown` if any client's verdict was.
    pub acs: PathAcs,
}

impl DistanceMany {
    /// What `pci_p2pdma_distance_many()` returns.
    ///
    /// ```
    /// use dmaspace_pci::{PathAcs, DistanceMany};
    /// let d = DistanceMany { distance: Some(4), acs: PathAcs::Known };
    /// assert_eq!(d.kernel_distance(), 4);
    /// ```
    #[must_use]
    pub fn kernel_distance(&self) -> i32 {
        match self.distance {
            None => -1,
            Some(d) => i32::try_from(d).unwrap_or(i32::MAX),
        }
    }
}

/// The result of [`Topology::find_closest`].
///
/// ```
/// use dmaspace_pci::{Bdf, PciFunction, Policy, Topology};
/// let a = Bdf::new(0, 0, 3, 0);
/// let topo = Topology::builder().function(PciFunction::new(a, 1, 1)).build()?;
/// let c = topo.find_closest(&[a], &[a], &Policy::default())?;
/// assert_eq!(c.map(|c| (c.provider, c.distance, c.tied)), Some((a, 0, 1)));
/// # Ok::<(), dmaspace_pci::TopologyError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Closest {
    /// The provider chosen.
    pub provider: Bdf,
    /// Its summed distance to the clients.
    pub distance: u32,
    /// How many providers were at that distance (the kernel picks one at random).
    pub tied: usize,
}

/// Tri-state for the allowlist decision.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tri {
    Yes,
    No,
    Unknown(Bdf),
}

/// Receives the steps of one classification. [`Topology::verdict_by_walk`] passes
/// [`NoTrace`] (every step closure is dropped unevaluated), [`Topology::explain`] a
/// recorder: one code path decides both.
pub(crate) trait Tracer {
    /// One step, built only if the tracer keeps it.
    fn step(&mut self, step: impl FnOnce() -> Step);
}

/// The tracer of [`Topology::verdict_by_walk`]: keeps nothing.
pub(crate) struct NoTrace;

impl Tracer for NoTrace {
    #[inline(always)]
    fn step(&mut self, _step: impl FnOnce() -> Step) {}
}

impl Tracer for Vec<Step> {
    fn step(&mut self, step: impl FnOnce() -> Step) {
        self.push(step());
    }
}

fn to_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// The decision of `__host_bridge_whitelist()` for a host bridge whose
/// `pci_host_bridge_dev()` has IDs `dev` and whose first root-bus function has IDs
/// `first` (`unknown`: that function is not 00.0 and its port type is unreadable).
/// Returns the first matching entry and `Some(allowed)`, or `None` when not known.
fn allow_decision(
    dev: Option<(u16, u16)>,
    first: Option<(u16, u16)>,
    unknown: bool,
    same: bool,
    policy: &Policy,
) -> (Option<AllowlistEntry>, Option<bool>) {
    match (dev, first) {
        (Some((vendor, device)), _) => {
            let entry = policy.allowlist.lookup(vendor, device).copied();
            let allowed = match entry {
                Some(e) if e.flags.contains(AllowFlags::REQ_SAME_HOST_BRIDGE) && !same => false,
                Some(_) => true,
                None => false,
            };
            (entry, Some(allowed))
        }
        (None, Some((vendor, device))) if unknown => {
            // The first function is not 00.0 and its port type is unreadable: the
            // answer depends on it only if its IDs would be allowed.
            let entry = policy.allowlist.lookup(vendor, device).copied();
            match entry {
                Some(e) if same || !e.flags.contains(AllowFlags::REQ_SAME_HOST_BRIDGE) => {
                    (entry, None)
                }
                _ => (entry, Some(false)),
            }
        }
        _ => (None, Some(false)),
    }
}

/// `host_bridge_whitelist()` over two decisions: one when both sit below one host
/// bridge, else both must allow.
const fn both(a: Tri, b: Tri) -> Tri {
    match (a, b) {
        (Tri::No, _) | (_, Tri::No) => Tri::No,
        (Tri::Unknown(x), _) | (_, Tri::Unknown(x)) => Tri::Unknown(x),
        (Tri::Yes, Tri::Yes) => Tri::Yes,
    }
}

impl Topology {
    fn hb_of(&self, bdf: Bdf) -> Result<HostBridgeId, TopologyError> {
        self.function(bdf)
            .map(|f| f.host_bridge)
            .ok_or(TopologyError::UnknownFunction(bdf))
    }

    /// `__host_bridge_whitelist()`, with what it looked at (the plain walk's: the root
    /// bus is scanned, not looked up).
    fn host_bridge_check(&self, hb: HostBridgeId, same: bool, policy: &Policy) -> HostBridgeCheck {
        let first = self.first_on_root_bus_scan(hb);
        let (dev, unknown) = host_bridge_dev_of(first);
        let (entry, allowed) = allow_decision(
            dev.map(|d| (d.vendor, d.device)),
            first.map(|f| (f.vendor, f.device)),
            unknown,
            same,
            policy,
        );
        HostBridgeCheck {
            host_bridge: hb,
            same_host_bridge: same,
            device: dev.copied(),
            first_function: first.copied(),
            entry,
            allowed,
        }
    }

    /// `host_bridge_whitelist()`: one check when both sit below one host bridge, else
    /// both must allow.
    fn hb_whitelist(
        &self,
        provider: Bdf,
        client: Bdf,
        policy: &Policy,
    ) -> Result<(Tri, HostBridgeCheck, Option<HostBridgeCheck>), TopologyError> {
        let tri = |c: &HostBridgeCheck| match c.allowed {
            Some(true) => Tri::Yes,
            Some(false) => Tri::No,
            None => Tri::Unknown(c.first_function.map_or(provider, |f| f.bdf)),
        };
        let ha = self.hb_of(provider)?;
        let hb = self.hb_of(client)?;
        if ha == hb {
            let a = self.host_bridge_check(ha, true, policy);
            return Ok((tri(&a), a, None));
        }
        let a = self.host_bridge_check(ha, false, policy);
        let b = self.host_bridge_check(hb, false, policy);
        Ok((both(tri(&a), tri(&b)), a, Some(b)))
    }

    /// The upstream chain of `bdf`, the function itself first (bounded by the number of
    /// functions, which a built topology never reaches).
    fn chain(&self, bdf: Bdf) -> Result<Vec<Bdf>, TopologyError> {
        let mut out = Vec::new();
        let mut cur = Some(bdf);
        while let Some(c) = cur {
            if out.len() > self.functions.len() {
                return Err(TopologyError::Cycle(bdf));
            }
            out.push(c);
            cur = self.upstream_bridge(c)?;
        }
        Ok(out)
    }

    fn acs_of(&self, bdf: Bdf) -> AcsState {
        self.function(bdf).map_or(AcsState::Absent, |f| f.acs)
    }

    /// The kernel's `calc_map_type_and_dist(provider, client)`.
    ///
    /// The kernel walks the provider's chain from the provider up; each node is first
    /// checked for ACS redirect, then searched in the client's chain. The client side
    /// then checks the nodes strictly below the common upstream bridge. This answers
    /// the same from the topology's precomputed tables, without walking: the common
    /// upstream bridge is the lowest common ancestor (found by depth), and the first
    /// redirecting node on the walk is one of the two nearest redirecting nodes above
    /// each end (see `src/topology/index.rs`); O(depth), no allocation. The walk itself
    /// runs in [`Topology::explain`], with every step recorded, and the two are checked
    /// equal on random trees (`tests/topology_fast_path.rs`). See [`Verdict`] for what
    /// happens when config space was unreadable.
    ///
    /// ```
    /// use dmaspace_pci::{Bdf, MapType, PciFunction, PciePortType, Policy, Topology};
    /// let rp = Bdf::new(0, 0, 2, 0);
    /// let (d0, d1) = (Bdf::new(0, 1, 0, 0), Bdf::new(0, 1, 0, 1));
    /// let topo = Topology::builder()
    ///     .function(PciFunction::new(rp, 0x1b36, 0x000c).with_port(PciePortType::RootPort))
    ///     .function(PciFunction::new(d0, 0x1b36, 0x0010).under(rp))
    ///     .function(PciFunction::new(d1, 0x1b36, 0x0010).under(rp))
    ///     .build()?;
    /// let v = topo.verdict(d0, d1, &Policy::default())?;
    /// assert_eq!((v.map_type, v.distance), (MapType::BusAddr, 2));
    /// assert_eq!(v.common_upstream, Some(rp));
    /// # Ok::<(), dmaspace_pci::TopologyError>(())
    /// ```
    pub fn verdict(
        &self,
        provider: Bdf,
        client: Bdf,
        policy: &Policy,
    ) -> Result<Verdict, TopologyError> {
        // The kernel walk's errors, in its order: the provider's chain, then the client's.
        let p = self.index.walkable(provider)?;
        let c = self.index.walkable(client)?;
        Ok(self.verdict_at(p, c, policy))
    }

    /// [`verdict`](Self::verdict) of two walkable functions, by dense index.
    pub(crate) fn verdict_at(&self, p: usize, c: usize, policy: &Policy) -> Verdict {
        let ix = &self.index;
        let (np, nc) = (&ix.nodes[p], &ix.nodes[c]);
        let mut verdict = Verdict {
            provider: ix.bdfs[p],
            client: ix.bdfs[c],
            generation: self.generation,
            map_type: MapType::ThruHostBridge,
            distance: 0,
            acs: PathAcs::Known,
            common_upstream: None,
            acs_redirect: None,
            unknown_at: None,
        };
        let bdf = |i: u32| ix.bdfs.get(i as usize).copied();
        match ix.common(p, c) {
            Some((bridge, l)) => {
                verdict.common_upstream = Some(ix.bdfs[bridge]);
                verdict.distance = (np.depth - l).saturating_add(nc.depth - l);
                let redirect = index::first_on_walk(
                    np.redirect,
                    np.redirect_d1,
                    nc.redirect,
                    nc.redirect_d1,
                    l,
                );
                if redirect == NONE {
                    let unknown = index::first_on_walk(
                        np.unknown,
                        np.unknown_d1,
                        nc.unknown,
                        nc.unknown_d1,
                        l,
                    );
                    if unknown == NONE {
                        verdict.map_type = MapType::BusAddr;
                    } else {
                        verdict.map_type = MapType::NotSupported;
                        verdict.acs = PathAcs::Unknown;
                        verdict.unknown_at = bdf(unknown);
                    }
                    return verdict;
                }
                verdict.acs_redirect = bdf(redirect);
            }
            None => {
                // Both walks ran to the end: the two chain lengths.
                verdict.distance = (np.depth + 1).saturating_add(nc.depth + 1);
            }
        }
        if !self.cpu.supports_p2pdma() {
            match self.hb_tri(np.hb, nc.hb, policy) {
                Tri::Yes => {}
                Tri::No => verdict.map_type = MapType::NotSupported,
                Tri::Unknown(u) => {
                    verdict.map_type = MapType::NotSupported;
                    verdict.acs = PathAcs::Unknown;
                    verdict.unknown_at = Some(u);
                }
            }
        }
        verdict
    }

    /// `host_bridge_whitelist()` from the index, host bridges by dense index.
    pub(crate) fn hb_tri(&self, hp: u32, hc: u32, policy: &Policy) -> Tri {
        let check = |h: u32, same: bool| {
            let Some(info) = self.index.hb(h) else {
                return Tri::No;
            };
            let ids = |i: u32| (i != NONE).then_some(info.ids);
            let (_, allowed) =
                allow_decision(ids(info.dev), ids(info.first), info.unknown, same, policy);
            match allowed {
                Some(true) => Tri::Yes,
                Some(false) => Tri::No,
                None => Tri::Unknown(self.index.bdfs[info.first as usize]),
            }
        };
        if hp == hc {
            check(hp, true)
        } else {
            both(check(hp, false), check(hc, false))
        }
    }

    /// [`verdict`](Self::verdict) by the kernel's own walk, step for step (both chains
    /// built, the client's searched for each node of the provider's, the root bus
    /// scanned for the host bridge device): the code [`Topology::explain`] records. It
    /// answers exactly as `verdict` does, more slowly; it is there to check one against
    /// the other.
    ///
    /// ```
    /// use dmaspace_pci::{Bdf, PciFunction, Policy, Topology};
    /// let rp = Bdf::new(0, 0, 2, 0);
    /// let (d0, e) = (Bdf::new(0, 1, 0, 0), Bdf::new(0, 0, 3, 0));
    /// let topo = Topology::builder()
    ///     .function(PciFunction::new(rp, 1, 1))
    ///     .function(PciFunction::new(d0, 1, 2).under(rp))
    ///     .function(PciFunction::new(e, 1, 2))
    ///     .build()?;
    /// let policy = Policy::default();
    /// for (p, c) in [(d0, e), (e, d0), (d0, rp), (rp, rp)] {
    ///     assert_eq!(topo.verdict_by_walk(p, c, &policy)?, topo.verdict(p, c, &policy)?);
    /// }
    /// # Ok::<(), dmaspace_pci::TopologyError>(())
    /// ```
    pub fn verdict_by_walk(
        &self,
        provider: Bdf,
        client: Bdf,
        policy: &Policy,
    ) -> Result<Verdict, TopologyError> {
        self.classify(provider, client, policy, &mut NoTrace)
    }

    /// `calc_map_type_and_dist()`, reporting each step to `trace`.
    pub(crate) fn classify<T: Tracer>(
        &self,
        provider: Bdf,
        client: Bdf,
        policy: &Policy,
        trace: &mut T,
    ) -> Result<Verdict, TopologyError> {
        let pchain = self.chain(provider)?;
        let cchain = self.chain(client)?;
        for (side, chain) in [(Side::Provider, &pchain), (Side::Client, &cchain)] {
            trace.step(|| Step::Chain {
                side,
                nodes: chain.clone(),
                physfn: self.function(chain[0]).and_then(|f| f.physfn),
                host_bridge: self.function(chain[0]).map(|f| f.host_bridge),
            });
        }
        let mut redirect: Option<Bdf> = None;
        let mut unknown: Option<Bdf> = None;
        let note =
            |bdf: Bdf, acs: AcsState, redirect: &mut Option<Bdf>, unknown: &mut Option<Bdf>| {
                match acs.redirects() {
                    Some(true) => {
                        redirect.get_or_insert(bdf);
                    }
                    None => {
                        unknown.get_or_insert(bdf);
                    }
                    Some(false) => {}
                }
            };

        let mut common: Option<(usize, usize)> = None;
        for (dist_a, &a) in pchain.iter().enumerate() {
            let acs = self.acs_of(a);
            note(a, acs, &mut redirect, &mut unknown);
            let found = cchain.iter().position(|&bb| bb == a);
            trace.step(|| Step::ProviderHop {
                hop: to_u32(dist_a),
                node: a,
                acs,
                in_client_chain: found.map(to_u32),
            });
            if let Some(dist_b) = found {
                common = Some((dist_a, dist_b));
                break;
            }
        }

        let mut verdict = Verdict {
            provider,
            client,
            generation: self.generation,
            map_type: MapType::ThruHostBridge,
            distance: 0,
            acs: PathAcs::Known,
            common_upstream: None,
            acs_redirect: None,
            unknown_at: None,
        };

        match common {
            Some((dist_a, dist_b)) => {
                let bridge = pchain[dist_a];
                verdict.common_upstream = Some(bridge);
                verdict.distance = to_u32(dist_a).saturating_add(to_u32(dist_b));
                trace.step(|| Step::CommonUpstream {
                    node: bridge,
                    provider_hops: to_u32(dist_a),
                    client_hops: to_u32(dist_b),
                });
                for (hop, &bb) in cchain[..dist_b].iter().enumerate() {
                    let acs = self.acs_of(bb);
                    note(bb, acs, &mut redirect, &mut unknown);
                    trace.step(|| Step::ClientHop {
                        hop: to_u32(hop),
                        node: bb,
                        acs,
                    });
                }
                verdict.acs_redirect = redirect;
                if redirect.is_none() {
                    if let Some(u) = unknown {
                        verdict.map_type = MapType::NotSupported;
                        verdict.acs = PathAcs::Unknown;
                        verdict.unknown_at = Some(u);
                        trace.step(|| Step::AcsUnreadable { node: u });
                    } else {
                        verdict.map_type = MapType::BusAddr;
                        trace.step(|| Step::NoAcsRedirect);
                    }
                    trace.step(|| Step::Outcome {
                        map_type: verdict.map_type,
                        distance: verdict.distance,
                    });
                    return Ok(verdict);
                }
                trace.step(|| Step::AcsRedirect {
                    nodes: pchain[..=dist_a]
                        .iter()
                        .chain(&cchain[..dist_b])
                        .filter_map(|&b| match self.acs_of(b) {
                            AcsState::Control(c) if c.redirects() => Some((b, c)),
                            _ => None,
                        })
                        .collect(),
                });
            }
            None => {
                // The kernel leaves the loop with dist_a = provider chain length and
                // dist_b = client chain length (the last inner walk ran to the end).
                verdict.distance = to_u32(pchain.len()).saturating_add(to_u32(cchain.len()));
                trace.step(|| Step::NoCommonUpstream {
                    provider_hops: to_u32(pchain.len()),
                    client_hops: to_u32(cchain.len()),
                });
            }
        }

        // map_through_host_bridge:
        let cpu_allows = self.cpu.supports_p2pdma();
        trace.step(|| Step::CpuRule {
            cpu: self.cpu,
            allows: cpu_allows,
        });
        if !cpu_allows {
            let (tri, a, b) = self.hb_whitelist(provider, client, policy)?;
            trace.step(|| Step::HostBridge(a));
            if let Some(b) = b {
                trace.step(|| Step::HostBridge(b));
            }
            match tri {
                Tri::Yes => {}
                Tri::No => verdict.map_type = MapType::NotSupported,
                Tri::Unknown(u) => {
                    verdict.map_type = MapType::NotSupported;
                    verdict.acs = PathAcs::Unknown;
                    verdict.unknown_at = Some(u);
                }
            }
        }
        trace.step(|| Step::Outcome {
            map_type: verdict.map_type,
            distance: verdict.distance,
        });
        Ok(verdict)
    }

    /// The kernel's `pci_p2pdma_distance_many(provider, clients)`: no clients → -1
    /// (`None`); any client not supported → `None`; else the sum of the distances.
    ///
    /// ```
    /// use dmaspace_pci::{Bdf, PciFunction, Policy, Topology};
    /// let rp = Bdf::new(0, 0, 2, 0);
    /// let (d0, d1) = (Bdf::new(0, 1, 0, 0), Bdf::new(0, 1, 0, 1));
    /// let topo = Topology::builder()
    ///     .function(PciFunction::new(rp, 1, 1))
    ///     .function(PciFunction::new(d0, 1, 2).under(rp))
    ///     .function(PciFunction::new(d1, 1, 2).under(rp))
    ///     .build()?;
    /// let d = topo.distance_many(d0, &[d0, d1], &Policy::default())?;
    /// assert_eq!(d.distance, Some(2));
    /// # Ok::<(), dmaspace_pci::TopologyError>(())
    /// ```
    pub fn distance_many(
        &self,
        provider: Bdf,
        clients: &[Bdf],
        policy: &Policy,
    ) -> Result<DistanceMany, TopologyError> {
        let mut out = DistanceMany {
            distance: None,
            acs: PathAcs::Known,
        };
        if clients.is_empty() {
            return Ok(out);
        }
        let mut total: u32 = 0;
        for &c in clients {
            let v = self.verdict(provider, c, policy)?;
            if v.acs == PathAcs::Unknown {
                out.acs = PathAcs::Unknown;
            }
            if v.map_type == MapType::NotSupported {
                return Ok(out);
            }
            total = total.saturating_add(v.distance);
        }
        out.distance = Some(total);
        Ok(out)
    }

    /// The kernel's `pci_p2pmem_find_many(clients)` over the given `providers` (the
    /// kernel takes every device that published P2P memory): the provider with the
    /// smallest [`distance_many`](Self::distance_many) wins. Where the kernel picks at
    /// random among equally close providers, this picks the lowest [`Bdf`] and reports
    /// how many were tied. Providers not supported for some client are skipped; `None`
    /// when none is left (or `clients` is empty). Duplicates in `providers` count once.
    ///
    /// ```
    /// use dmaspace_pci::{Bdf, PciFunction, Policy, Topology};
    /// let rp = Bdf::new(0, 0, 2, 0);
    /// let (d0, d1, e) = (Bdf::new(0, 1, 0, 0), Bdf::new(0, 1, 0, 1), Bdf::new(0, 0, 3, 0));
    /// let topo = Topology::builder()
    ///     .function(PciFunction::new(rp, 1, 1))
    ///     .function(PciFunction::new(d0, 1, 2).under(rp))
    ///     .function(PciFunction::new(d1, 1, 2).under(rp))
    ///     .function(PciFunction::new(e, 1, 2))
    ///     .build()?;
    /// let best = topo.find_closest(&[e, d1, d0], &[d0], &Policy::default())?;
    /// assert_eq!(best.map(|c| c.provider), Some(d0));
    /// # Ok::<(), dmaspace_pci::TopologyError>(())
    /// ```
    pub fn find_closest(
        &self,
        providers: &[Bdf],
        clients: &[Bdf],
        policy: &Policy,
    ) -> Result<Option<Closest>, TopologyError> {
        let mut sorted: Vec<Bdf> = providers.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        let mut best: Option<Closest> = None;
        for p in sorted {
            let Some(d) = self.distance_many(p, clients, policy)?.distance else {
                continue;
            };
            match &mut best {
                Some(b) if d == b.distance => b.tied += 1,
                Some(b) if d > b.distance => {}
                _ => {
                    best = Some(Closest {
                        provider: p,
                        distance: d,
                        tied: 1,
                    });
                }
            }
        }
        Ok(best)
    }
}
