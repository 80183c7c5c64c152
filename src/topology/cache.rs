//! A verdict cache that cannot go stale.

use alloc::collections::BTreeMap;

use super::allowlist::Policy;
use super::bdf::Bdf;
use super::classify::Verdict;
use super::error::TopologyError;
use super::tree::Topology;

/// Caches verdicts per (provider, client) for one topology generation and one policy.
///
/// The kernel caches the map type per client in the provider's xarray and never
/// invalidates it: after an ACS change or a hot-plug it keeps serving the old answer.
/// This cache remembers the [`Topology::generation`] and the [`Policy`] its entries were
/// computed under. Every lookup compares them first and, on any difference, drops all
/// entries before answering. Generations come from one process-wide counter, drawn anew
/// on every build and every mutation, so a generation is never reused for different
/// content: an entry can only be served for the very snapshot (or an unchanged clone of
/// it) that produced it. Each served [`Verdict`] also carries its `generation`.
///
/// ```
/// use dmaspace::topology::{AcsCtrl, AcsState, Bdf, MapType, PciFunction, Policy, Topology, VerdictCache};
/// let rp = Bdf::new(0, 0, 2, 0);
/// let (d0, d1) = (Bdf::new(0, 1, 0, 0), Bdf::new(0, 1, 0, 1));
/// let mut topo = Topology::builder()
///     .function(PciFunction::new(rp, 1, 1))
///     .function(PciFunction::new(d0, 1, 2).under(rp))
///     .function(PciFunction::new(d1, 1, 2).under(rp))
///     .build()?;
/// let policy = Policy::default();
/// let mut cache = VerdictCache::new();
/// assert_eq!(cache.verdict(&topo, d0, d1, &policy)?.map_type, MapType::BusAddr);
/// topo.set_acs(rp, AcsState::Control(AcsCtrl::RR))?;
/// assert_eq!(cache.verdict(&topo, d0, d1, &policy)?.map_type, MapType::NotSupported);
/// # Ok::<(), dmaspace::topology::TopologyError>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct VerdictCache {
    generation: Option<u64>,
    policy: Option<Policy>,
    entries: BTreeMap<(Bdf, Bdf), Verdict>,
    hits: u64,
    misses: u64,
}

impl VerdictCache {
    /// An empty cache.
    ///
    /// ```
    /// use dmaspace::topology::VerdictCache;
    /// assert!(VerdictCache::new().is_empty());
    /// ```
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// The verdict for (provider, client), from the cache when it was computed on this
    /// generation under this policy, else computed and stored.
    ///
    /// ```
    /// use dmaspace::topology::{Bdf, PciFunction, Policy, Topology, VerdictCache};
    /// let a = Bdf::new(0, 0, 3, 0);
    /// let topo = Topology::builder().function(PciFunction::new(a, 1, 1)).build()?;
    /// let mut cache = VerdictCache::new();
    /// let v1 = cache.verdict(&topo, a, a, &Policy::default())?;
    /// let v2 = cache.verdict(&topo, a, a, &Policy::default())?;
    /// assert_eq!(v1, v2);
    /// assert_eq!((cache.hits(), cache.misses()), (1, 1));
    /// # Ok::<(), dmaspace::topology::TopologyError>(())
    /// ```
    pub fn verdict(
        &mut self,
        topology: &Topology,
        provider: Bdf,
        client: Bdf,
        policy: &Policy,
    ) -> Result<Verdict, TopologyError> {
        let generation = topology.generation();
        if self.generation != Some(generation) || self.policy.as_ref() != Some(policy) {
            self.entries.clear();
            self.generation = Some(generation);
            self.policy = Some(policy.clone());
        }
        if let Some(v) = self.entries.get(&(provider, client)) {
            if v.generation == generation {
                self.hits += 1;
                return Ok(*v);
            }
        }
        self.misses += 1;
        let v = topology.verdict(provider, client, policy)?;
        self.entries.insert((provider, client), v);
        Ok(v)
    }

    /// The generation the entries belong to, if any.
    ///
    /// ```
    /// use dmaspace::topology::VerdictCache;
    /// assert_eq!(VerdictCache::new().generation(), None);
    /// ```
    #[must_use]
    pub const fn generation(&self) -> Option<u64> {
        self.generation
    }

    /// Number of cached verdicts.
    ///
    /// ```
    /// use dmaspace::topology::VerdictCache;
    /// assert_eq!(VerdictCache::new().len(), 0);
    /// ```
    #[must_use]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is cached.
    ///
    /// ```
    /// use dmaspace::topology::VerdictCache;
    /// assert!(VerdictCache::new().is_empty());
    /// ```
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Lookups answered from the cache.
    ///
    /// ```
    /// use dmaspace::topology::VerdictCache;
    /// assert_eq!(VerdictCache::new().hits(), 0);
    /// ```
    #[must_use]
    pub const fn hits(&self) -> u64 {
        self.hits
    }

    /// Lookups that computed.
    ///
    /// ```
    /// use dmaspace::topology::VerdictCache;
    /// assert_eq!(VerdictCache::new().misses(), 0);
    /// ```
    #[must_use]
    pub const fn misses(&self) -> u64 {
        self.misses
    }

    /// Drops every entry.
    ///
    /// ```
    /// use dmaspace::topology::VerdictCache;
    /// let mut c = VerdictCache::new();
    /// c.clear();
    /// assert!(c.is_empty());
    /// ```
    pub fn clear(&mut self) {
        self.entries.clear();
        self.generation = None;
        self.policy = None;
    }
}
