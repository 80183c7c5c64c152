//! A verdict cache that cannot go stale.

use alloc::vec;
use alloc::vec::Vec;

use super::allowlist::Policy;
use super::bdf::Bdf;
use super::error::TopologyError;
use super::tree::Topology;
use super::verdict::Verdict;

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
/// A lookup is a generation compare, a policy compare (a pointer compare when the
/// policy is the one the entries were computed under, or a clone of it: allowlists are
/// shared, never changed), and one probe of an open-addressing table keyed by the pair:
/// a few nanoseconds (`benches/topology.rs`, `topology/cached_verdict`).
///
/// ```
/// use dmaspace_pci::{AcsCtrl, AcsState, Bdf, MapType, PciFunction, Policy, Topology, VerdictCache};
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
/// # Ok::<(), dmaspace_pci::TopologyError>(())
/// ```
#[derive(Clone, Default)]
pub struct VerdictCache {
    generation: Option<u64>,
    policy: Option<Policy>,
    /// Open addressing with linear probing over packed pair keys ([`EMPTY`] where
    /// free); a power of two long (or empty), at most half full. Each key sits
    /// beside its verdict: a hit reads one place of memory, not two.
    slots: Vec<Slot>,
    /// `64 - log2(slots.len())`: the top bits of the hash index the table.
    shift: u32,
    len: usize,
    hits: u64,
    misses: u64,
}

impl core::fmt::Debug for VerdictCache {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("VerdictCache")
            .field("generation", &self.generation)
            .field("policy", &self.policy)
            .field("len", &self.len)
            .field("hits", &self.hits)
            .field("misses", &self.misses)
            .finish_non_exhaustive()
    }
}

/// A key and its verdict.
#[derive(Clone, Copy)]
struct Slot {
    key: (u64, u64),
    verdict: Verdict,
}

/// A free slot's key (no address packs to it: a domain has 32 bits).
const EMPTY: (u64, u64) = (u64::MAX, u64::MAX);

/// The address as one integer (in the order of its fields in memory, which makes it
/// a mask of the register it travels in).
#[inline]
fn key(b: Bdf) -> u64 {
    u64::from(b.domain)
        | (u64::from(b.bus) << 32)
        | (u64::from(b.device) << 40)
        | (u64::from(b.function) << 48)
}

/// Fibonacci hashing of both keys: the top bits of the last product depend on every
/// input bit.
#[inline]
fn hash((p, c): (u64, u64)) -> u64 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    (p.wrapping_mul(K).rotate_left(32) ^ c).wrapping_mul(K)
}

impl VerdictCache {
    /// An empty cache.
    ///
    /// ```
    /// use dmaspace_pci::VerdictCache;
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
    /// use dmaspace_pci::{Bdf, PciFunction, Policy, Topology, VerdictCache};
    /// let a = Bdf::new(0, 0, 3, 0);
    /// let topo = Topology::builder().function(PciFunction::new(a, 1, 1)).build()?;
    /// let mut cache = VerdictCache::new();
    /// let v1 = cache.verdict(&topo, a, a, &Policy::default())?;
    /// let v2 = cache.verdict(&topo, a, a, &Policy::default())?;
    /// assert_eq!(v1, v2);
    /// assert_eq!((cache.hits(), cache.misses()), (1, 1));
    /// # Ok::<(), dmaspace_pci::TopologyError>(())
    /// ```
    pub fn verdict(
        &mut self,
        topology: &Topology,
        provider: Bdf,
        client: Bdf,
        policy: &Policy,
    ) -> Result<Verdict, TopologyError> {
        let k = (key(provider), key(client));
        if self.generation == Some(topology.generation()) && self.policy.as_ref() == Some(policy) {
            if let Some(&v) = self.find(k) {
                self.hits += 1;
                return Ok(v);
            }
        }
        self.miss(topology, k, provider, client, policy)
    }

    /// The cached verdict for (provider, client), if one was computed on this
    /// topology's generation under this policy; computes nothing. A lookup that
    /// finds nothing is neither a hit nor a miss.
    ///
    /// ```
    /// use dmaspace_pci::{Bdf, PciFunction, Policy, Topology, VerdictCache};
    /// let a = Bdf::new(0, 0, 3, 0);
    /// let mut topo = Topology::builder().function(PciFunction::new(a, 1, 1)).build()?;
    /// let policy = Policy::default();
    /// let mut cache = VerdictCache::new();
    /// assert!(cache.get(&topo, a, a, &policy).is_none());
    /// let v = cache.verdict(&topo, a, a, &policy)?;
    /// assert_eq!(cache.get(&topo, a, a, &policy), Some(&v));
    /// topo.set_cpu(dmaspace_pci::CpuInfo::amd_zen());
    /// assert!(cache.get(&topo, a, a, &policy).is_none()); // another generation
    /// # Ok::<(), dmaspace_pci::TopologyError>(())
    /// ```
    #[inline]
    #[must_use]
    pub fn get(
        &self,
        topology: &Topology,
        provider: Bdf,
        client: Bdf,
        policy: &Policy,
    ) -> Option<&Verdict> {
        if self.generation != Some(topology.generation()) || self.policy.as_ref() != Some(policy) {
            return None;
        }
        self.find((key(provider), key(client)))
    }

    /// Computes and stores a verdict, after emptying the table if the generation or
    /// the policy changed.
    #[cold]
    #[inline(never)]
    fn miss(
        &mut self,
        topology: &Topology,
        k: (u64, u64),
        provider: Bdf,
        client: Bdf,
        policy: &Policy,
    ) -> Result<Verdict, TopologyError> {
        let generation = topology.generation();
        if self.generation != Some(generation) || self.policy.as_ref() != Some(policy) {
            self.drop_entries();
            self.generation = Some(generation);
            self.policy = Some(policy.clone());
        }
        self.misses += 1;
        let v = topology.verdict(provider, client, policy)?;
        self.insert(k, v);
        Ok(v)
    }

    /// The verdict stored under key `k`.
    #[inline]
    fn find(&self, k: (u64, u64)) -> Option<&Verdict> {
        let slots = &self.slots[..];
        let mask = slots.len().checked_sub(1)?;
        // `& mask` (a no-op: the shift leaves fewer bits) shows the compiler that
        // every index is in bounds.
        #[expect(
            clippy::cast_possible_truncation,
            reason = "the hash's top bits index the table: truncation is the intent"
        )]
        let mut i = (hash(k) >> self.shift) as usize & mask;
        loop {
            let s = &slots[i];
            match s.key {
                x if x == k => return Some(&s.verdict),
                EMPTY => return None,
                _ => i = (i + 1) & mask,
            }
        }
    }

    /// Stores `v` under `k`, which is not in the table.
    fn insert(&mut self, k: (u64, u64), v: Verdict) {
        if (self.len + 1) * 2 > self.slots.len() {
            let cap = (self.slots.len() * 2).max(16);
            let free = Slot {
                key: EMPTY,
                verdict: v,
            };
            let old = core::mem::replace(&mut self.slots, vec![free; cap]);
            self.shift = 64 - cap.trailing_zeros();
            for s in old {
                if s.key != EMPTY {
                    self.place(s.key, s.verdict);
                }
            }
        }
        self.place(k, v);
        self.len += 1;
    }

    fn place(&mut self, k: (u64, u64), v: Verdict) {
        let mask = self.slots.len() - 1;
        #[expect(
            clippy::cast_possible_truncation,
            reason = "the hash's top bits index the table: truncation is the intent"
        )]
        let mut i = (hash(k) >> self.shift) as usize;
        while self.slots[i].key != EMPTY {
            i = (i + 1) & mask;
        }
        self.slots[i] = Slot { key: k, verdict: v };
    }

    fn drop_entries(&mut self) {
        self.slots.clear();
        self.len = 0;
    }

    /// The generation the entries belong to, if any.
    ///
    /// ```
    /// use dmaspace_pci::VerdictCache;
    /// assert_eq!(VerdictCache::new().generation(), None);
    /// ```
    #[must_use]
    pub const fn generation(&self) -> Option<u64> {
        self.generation
    }

    /// Number of cached verdicts.
    ///
    /// ```
    /// use dmaspace_pci::VerdictCache;
    /// assert_eq!(VerdictCache::new().len(), 0);
    /// ```
    #[must_use]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is cached.
    ///
    /// ```
    /// use dmaspace_pci::VerdictCache;
    /// assert!(VerdictCache::new().is_empty());
    /// ```
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Lookups answered from the cache.
    ///
    /// ```
    /// use dmaspace_pci::VerdictCache;
    /// assert_eq!(VerdictCache::new().hits(), 0);
    /// ```
    #[must_use]
    pub const fn hits(&self) -> u64 {
        self.hits
    }

    /// Lookups that computed.
    ///
    /// ```
    /// use dmaspace_pci::VerdictCache;
    /// assert_eq!(VerdictCache::new().misses(), 0);
    /// ```
    #[must_use]
    pub const fn misses(&self) -> u64 {
        self.misses
    }

    /// Drops every entry.
    ///
    /// ```
    /// use dmaspace_pci::VerdictCache;
    /// let mut c = VerdictCache::new();
    /// c.clear();
    /// assert!(c.is_empty());
    /// ```
    pub fn clear(&mut self) {
        self.drop_entries();
        self.generation = None;
        self.policy = None;
    }
}
