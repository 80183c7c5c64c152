//! The PCI tree: functions, their upstream bridges, host bridges, VFs, the CPU.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use super::bar::{Bar, Bars};
use super::bdf::{Bdf, HostBridge, HostBridgeId};
use super::cpu::CpuInfo;
use super::error::TopologyError;
use super::function::PciFunction;
use super::index::Index;
use super::registers::{AcsState, PcieKind};

#[cfg(target_has_atomic = "64")]
fn next_generation() -> u64 {
    use core::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

#[cfg(not(target_has_atomic = "64"))]
fn next_generation() -> u64 {
    use core::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed) as u64
}

/// A snapshot of a PCI tree and the CPU: what the kernel's P2PDMA code looks at.
///
/// Built with [`Topology::builder`] or loaded with `sysfs::load` (feature `std`).
/// Every snapshot carries a [`generation`](Self::generation): a number drawn from a
/// process-wide counter when it is built and again on every mutation, so two
/// `Topology` values with one generation have the same content (a clone keeps the
/// number until either copy changes).
///
/// ```
/// use dmaspace_pci::{Bdf, CpuInfo, PciFunction, Topology};
/// let mut topo = Topology::builder()
///     .function(PciFunction::new(Bdf::new(0, 0, 0, 0), 0x8086, 0x29c0))
///     .build()?;
/// let g = topo.generation();
/// topo.set_cpu(CpuInfo::amd_zen());
/// assert_ne!(topo.generation(), g);
/// assert_eq!(topo.functions().count(), 1);
/// # Ok::<(), dmaspace_pci::TopologyError>(())
/// ```
#[derive(Clone, Debug)]
pub struct Topology {
    pub(crate) functions: BTreeMap<Bdf, PciFunction>,
    /// The BARs of the functions that have any. Verdicts never read them.
    pub(crate) bars: BTreeMap<Bdf, Bars>,
    pub(crate) host_bridges: BTreeMap<HostBridgeId, HostBridge>,
    pub(crate) cpu: CpuInfo,
    pub(crate) generation: u64,
    /// What the classification precomputes (`index.rs`); rebuilt whenever `functions`
    /// changes.
    pub(crate) index: Index,
}

impl Topology {
    /// Starts building a topology.
    ///
    /// ```
    /// use dmaspace_pci::Topology;
    /// let topo = Topology::builder().build()?;
    /// assert_eq!(topo.functions().count(), 0);
    /// # Ok::<(), dmaspace_pci::TopologyError>(())
    /// ```
    #[must_use]
    pub fn builder() -> TopologyBuilder {
        TopologyBuilder::default()
    }

    /// All functions, in [`Bdf`] order.
    ///
    /// ```
    /// use dmaspace_pci::{Bdf, PciFunction, Topology};
    /// let topo = Topology::builder()
    ///     .function(PciFunction::new(Bdf::new(0, 0, 3, 0), 1, 1))
    ///     .function(PciFunction::new(Bdf::new(0, 0, 2, 0), 1, 1))
    ///     .build()?;
    /// let bdfs: Vec<_> = topo.functions().map(|f| f.bdf.to_string()).collect();
    /// assert_eq!(bdfs, ["0000:00:02.0", "0000:00:03.0"]);
    /// # Ok::<(), dmaspace_pci::TopologyError>(())
    /// ```
    pub fn functions(&self) -> impl Iterator<Item = &PciFunction> {
        self.functions.values()
    }

    /// The function at `bdf`.
    ///
    /// ```
    /// use dmaspace_pci::{Bdf, PciFunction, Topology};
    /// let bdf = Bdf::new(0, 0, 3, 0);
    /// let topo = Topology::builder().function(PciFunction::new(bdf, 0x1b36, 0x10)).build()?;
    /// assert_eq!(topo.function(bdf).map(|f| f.device), Some(0x10));
    /// assert!(topo.function(Bdf::new(0, 0, 4, 0)).is_none());
    /// # Ok::<(), dmaspace_pci::TopologyError>(())
    /// ```
    #[must_use]
    pub fn function(&self, bdf: Bdf) -> Option<&PciFunction> {
        self.functions.get(&bdf)
    }

    /// The BARs of the function at `bdf` (none for a function that has no
    /// `resource` file or was built without); `None` if there is no such
    /// function. BARs play no part in verdicts.
    ///
    /// ```
    /// use dmaspace_pci::{Bar, BarFlags, Bdf, PciFunction, Topology};
    /// let (nvme, rp) = (Bdf::new(0, 1, 0, 0), Bdf::new(0, 0, 2, 0));
    /// let cmb = Bar::new(2, 0xf700_0000, 16 << 20, BarFlags::MEM | BarFlags::PREFETCH)?;
    /// let topo = Topology::builder()
    ///     .function(PciFunction::new(rp, 0x1b36, 0x000c))
    ///     .function(PciFunction::new(nvme, 0x1b36, 0x0010).under(rp))
    ///     .bar(nvme, cmb)
    ///     .build()?;
    /// assert_eq!(topo.bars(nvme).and_then(|b| b.get(2)), Some(&cmb));
    /// assert_eq!(topo.bars(rp).map(|b| b.iter().count()), Some(0));
    /// assert!(topo.bars(Bdf::new(0, 9, 0, 0)).is_none());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn bars(&self, bdf: Bdf) -> Option<&Bars> {
        if !self.functions.contains_key(&bdf) {
            return None;
        }
        Some(self.bars.get(&bdf).unwrap_or(&Bars::NONE))
    }

    /// All host bridges, in id order.
    ///
    /// ```
    /// use dmaspace_pci::{Bdf, PciFunction, Topology};
    /// let topo = Topology::builder().function(PciFunction::new(Bdf::new(0, 0x80, 0, 0), 1, 1)).build()?;
    /// assert_eq!(topo.host_bridges().next().map(|h| h.id.to_string()), Some("pci0000:80".into()));
    /// # Ok::<(), dmaspace_pci::TopologyError>(())
    /// ```
    pub fn host_bridges(&self) -> impl Iterator<Item = &HostBridge> {
        self.host_bridges.values()
    }

    /// The CPU.
    ///
    /// ```
    /// use dmaspace_pci::{CpuInfo, Topology};
    /// let topo = Topology::builder().cpu(CpuInfo::amd_zen()).build()?;
    /// assert_eq!(topo.cpu(), CpuInfo::amd_zen());
    /// # Ok::<(), dmaspace_pci::TopologyError>(())
    /// ```
    #[must_use]
    pub const fn cpu(&self) -> CpuInfo {
        self.cpu
    }

    /// The snapshot's generation: unique per build and per mutation, process-wide.
    ///
    /// ```
    /// use dmaspace_pci::Topology;
    /// let a = Topology::builder().build()?;
    /// let b = Topology::builder().build()?;
    /// assert_ne!(a.generation(), b.generation());
    /// assert_eq!(a.clone().generation(), a.generation());
    /// # Ok::<(), dmaspace_pci::TopologyError>(())
    /// ```
    #[must_use]
    pub const fn generation(&self) -> u64 {
        self.generation
    }

    /// The kernel's `pci_upstream_bridge()`: for a VF, its PF's upstream bridge; `None`
    /// on a root bus. Errors if `bdf` is not in the topology.
    ///
    /// ```
    /// use dmaspace_pci::{Bdf, PciFunction, Topology};
    /// let rp = Bdf::new(0, 0, 2, 0);
    /// let pf = Bdf::new(0, 1, 0, 0);
    /// let vf = Bdf::new(0, 1, 0, 1);
    /// let topo = Topology::builder()
    ///     .function(PciFunction::new(rp, 1, 1))
    ///     .function(PciFunction::new(pf, 1, 2).under(rp))
    ///     .function(PciFunction::new(vf, 1, 3).vf_of(pf))
    ///     .build()?;
    /// assert_eq!(topo.upstream_bridge(vf)?, Some(rp));
    /// assert_eq!(topo.upstream_bridge(rp)?, None);
    /// # Ok::<(), dmaspace_pci::TopologyError>(())
    /// ```
    pub fn upstream_bridge(&self, bdf: Bdf) -> Result<Option<Bdf>, TopologyError> {
        let f = self
            .functions
            .get(&bdf)
            .ok_or(TopologyError::UnknownFunction(bdf))?;
        let base = match f.physfn {
            Some(pf) => self
                .functions
                .get(&pf)
                .ok_or(TopologyError::BadPhysfn { vf: bdf, pf })?,
            None => f,
        };
        Ok(base.parent)
    }

    /// The kernel's `pci_host_bridge_dev()`: the first function on the host bridge's root
    /// bus, if it is devfn 00.0 or a Root Port. "First" is the order the kernel scans in:
    /// physical functions by devfn, then VFs by devfn. The second value is `true` when the
    /// answer is not known because the first function's PCIe capability could not be read.
    ///
    /// ```
    /// use dmaspace_pci::{Bdf, HostBridgeId, PciFunction, PciePortType, Topology};
    /// let topo = Topology::builder()
    ///     .function(PciFunction::new(Bdf::new(0, 0, 1, 0), 0x8086, 0x2030).with_port(PciePortType::RootPort))
    ///     .build()?;
    /// let (dev, unknown) = topo.host_bridge_dev(HostBridgeId::new(0, 0));
    /// assert_eq!(dev.map(|f| f.device), Some(0x2030));
    /// assert!(!unknown);
    /// # Ok::<(), dmaspace_pci::TopologyError>(())
    /// ```
    #[must_use]
    pub fn host_bridge_dev(&self, hb: HostBridgeId) -> (Option<&PciFunction>, bool) {
        host_bridge_dev_of(self.first_on_root_bus(hb))
    }

    /// The first function on the root bus of `hb` in kernel scan order (physical
    /// functions by devfn, then VFs by devfn), whatever it is.
    ///
    /// ```
    /// use dmaspace_pci::{Bdf, HostBridgeId, PciFunction, Topology};
    /// let topo = Topology::builder()
    ///     .function(PciFunction::new(Bdf::new(0, 0, 3, 0), 1, 3))
    ///     .function(PciFunction::new(Bdf::new(0, 0, 1, 0), 1, 1))
    ///     .build()?;
    /// assert_eq!(topo.first_on_root_bus(HostBridgeId::new(0, 0)).map(|f| f.device), Some(1));
    /// # Ok::<(), dmaspace_pci::TopologyError>(())
    /// ```
    #[must_use]
    pub fn first_on_root_bus(&self, hb: HostBridgeId) -> Option<&PciFunction> {
        let first = self.index.hb_by_id(hb)?.first;
        self.functions.get(self.index.bdfs.get(first as usize)?)
    }

    /// [`first_on_root_bus`](Self::first_on_root_bus) by a scan of every function, as
    /// the plain walk of [`Topology::explain`] asks it (kept apart from the index so
    /// that the two paths check each other).
    pub(crate) fn first_on_root_bus_scan(&self, hb: HostBridgeId) -> Option<&PciFunction> {
        self.functions
            .values()
            .filter(|f| {
                f.host_bridge == hb
                    && f.bdf.bus == hb.bus
                    && matches!(self.upstream_bridge(f.bdf), Ok(None))
            })
            .min_by_key(|f| (f.physfn.is_some(), f.bdf.devfn()))
    }

    /// Sets the ACS state of one function (as `setpci` or `pci=config_acs=` would) and
    /// takes a new generation.
    ///
    /// ```
    /// use dmaspace_pci::{AcsCtrl, AcsState, Bdf, PciFunction, Topology};
    /// let bdf = Bdf::new(0, 0, 2, 0);
    /// let mut topo = Topology::builder().function(PciFunction::new(bdf, 1, 1)).build()?;
    /// let g = topo.generation();
    /// topo.set_acs(bdf, AcsState::Control(AcsCtrl::RR))?;
    /// assert!(topo.generation() > g);
    /// # Ok::<(), dmaspace_pci::TopologyError>(())
    /// ```
    pub fn set_acs(&mut self, bdf: Bdf, acs: AcsState) -> Result<(), TopologyError> {
        let f = self
            .functions
            .get_mut(&bdf)
            .ok_or(TopologyError::UnknownFunction(bdf))?;
        f.acs = acs;
        self.index.refresh_acs(&self.functions);
        self.generation = next_generation();
        Ok(())
    }

    /// Replaces the CPU and takes a new generation.
    ///
    /// ```
    /// use dmaspace_pci::{CpuInfo, Topology};
    /// let mut topo = Topology::builder().build()?;
    /// topo.set_cpu(CpuInfo::amd_zen());
    /// assert!(topo.cpu().supports_p2pdma());
    /// # Ok::<(), dmaspace_pci::TopologyError>(())
    /// ```
    pub fn set_cpu(&mut self, cpu: CpuInfo) {
        self.cpu = cpu;
        self.generation = next_generation();
    }
}

/// `pci_host_bridge_dev()` given the first function on the root bus: it, if it is devfn
/// 00.0 or a Root Port; `true` when its unreadable PCIe capability leaves it unknown.
pub(crate) fn host_bridge_dev_of(first: Option<&PciFunction>) -> (Option<&PciFunction>, bool) {
    match first {
        None => (None, false),
        Some(f) if f.bdf.devfn() == 0 => (Some(f), false),
        Some(f) if f.pcie.is_root_port() => (Some(f), false),
        Some(f) if f.pcie == PcieKind::Unknown => (None, true),
        Some(_) => (None, false),
    }
}

/// Builds a [`Topology`]; see [`Topology::builder`].
///
/// ```
/// use dmaspace_pci::{Bdf, CpuInfo, HostBridgeId, PciFunction, PciePortType, Topology};
/// let vmd = Bdf::new(0, 0, 0x0e, 0);
/// let topo = Topology::builder()
///     .cpu(CpuInfo::amd_zen())
///     .function(PciFunction::new(vmd, 0x8086, 0x467f))
///     .host_bridge_below(HostBridgeId::new(0x10000, 0), vmd)
///     .function(PciFunction::new(Bdf::new(0x10000, 0, 2, 0), 0x8086, 0x2030).with_port(PciePortType::RootPort))
///     .build()?;
/// assert_eq!(topo.host_bridges().count(), 2);
/// # Ok::<(), dmaspace_pci::TopologyError>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct TopologyBuilder {
    functions: Vec<PciFunction>,
    bars: Vec<(Bdf, Bar)>,
    nested: Vec<(HostBridgeId, Bdf)>,
    cpu: CpuInfo,
}

impl TopologyBuilder {
    /// Adds a function.
    ///
    /// ```
    /// use dmaspace_pci::{Bdf, PciFunction, Topology};
    /// let topo = Topology::builder().function(PciFunction::new(Bdf::new(0, 0, 0, 0), 1, 1)).build()?;
    /// assert_eq!(topo.functions().count(), 1);
    /// # Ok::<(), dmaspace_pci::TopologyError>(())
    /// ```
    #[must_use]
    pub fn function(mut self, f: PciFunction) -> Self {
        self.functions.push(f);
        self
    }

    /// Adds a function in place (for loops).
    ///
    /// ```
    /// use dmaspace_pci::{Bdf, PciFunction, Topology};
    /// let mut b = Topology::builder();
    /// for dev in 0..4 {
    ///     b.push(PciFunction::new(Bdf::new(0, 0, dev, 0), 1, 1));
    /// }
    /// assert_eq!(b.build()?.functions().count(), 4);
    /// # Ok::<(), dmaspace_pci::TopologyError>(())
    /// ```
    pub fn push(&mut self, f: PciFunction) -> &mut Self {
        self.functions.push(f);
        self
    }

    /// Gives the function at `bdf` the BAR `bar` (a later BAR of the same
    /// index replaces an earlier one). See [`Topology::bars`].
    ///
    /// # Errors
    /// [`build`](Self::build) fails with [`TopologyError::UnknownFunction`]
    /// if no function has this address.
    ///
    /// See [`Topology::bars`].
    #[must_use]
    pub fn bar(mut self, bdf: Bdf, bar: Bar) -> Self {
        self.bars.push((bdf, bar));
        self
    }

    /// [`bar`](Self::bar) in place (for loops).
    ///
    /// ```
    /// use dmaspace_pci::{Bar, BarFlags, Bdf, PciFunction, Topology, TopologyError};
    /// let f = Bdf::new(0, 1, 0, 0);
    /// let mut b = Topology::builder();
    /// b.push(PciFunction::new(f, 1, 1));
    /// b.push_bar(Bdf::new(0, 2, 0, 0), Bar::new(0, 0x1000, 0x1000, BarFlags::MEM)?);
    /// assert_eq!(b.build().err(), Some(TopologyError::UnknownFunction(Bdf::new(0, 2, 0, 0))));
    /// # Ok::<(), dmaspace_pci::BarError>(())
    /// ```
    pub fn push_bar(&mut self, bdf: Bdf, bar: Bar) -> &mut Self {
        self.bars.push((bdf, bar));
        self
    }

    /// Declares that host bridge `hb` sits below PCI function `below` (Intel VMD).
    ///
    /// ```
    /// use dmaspace_pci::{Bdf, HostBridgeId, PciFunction, Topology};
    /// let vmd = Bdf::new(0, 0, 0x0e, 0);
    /// let topo = Topology::builder()
    ///     .function(PciFunction::new(vmd, 0x8086, 0x467f))
    ///     .host_bridge_below(HostBridgeId::new(0x10000, 0), vmd)
    ///     .build()?;
    /// assert!(topo.host_bridges().any(|h| h.below == Some(vmd)));
    /// # Ok::<(), dmaspace_pci::TopologyError>(())
    /// ```
    #[must_use]
    pub fn host_bridge_below(mut self, hb: HostBridgeId, below: Bdf) -> Self {
        self.nested.push((hb, below));
        self
    }

    /// Sets the CPU (default: [`CpuInfo::other`]).
    ///
    /// ```
    /// use dmaspace_pci::{CpuInfo, Topology};
    /// assert!(Topology::builder().cpu(CpuInfo::amd_zen()).build()?.cpu().supports_p2pdma());
    /// # Ok::<(), dmaspace_pci::TopologyError>(())
    /// ```
    #[must_use]
    pub fn cpu(mut self, cpu: CpuInfo) -> Self {
        self.cpu = cpu;
        self
    }

    /// Checks and freezes the tree: addresses unique, parents and PFs present, a PF not
    /// itself a VF, no cycles. Host bridges are inherited from parent (or PF) to child.
    ///
    /// ```
    /// use dmaspace_pci::{Bdf, PciFunction, Topology, TopologyError};
    /// let a = Bdf::new(0, 1, 0, 0);
    /// let err = Topology::builder().function(PciFunction::new(a, 1, 1).under(a)).build();
    /// assert_eq!(err.err(), Some(TopologyError::Cycle(a)));
    /// ```
    pub fn build(&self) -> Result<Topology, TopologyError> {
        let mut functions = BTreeMap::new();
        for f in &self.functions {
            if functions.insert(f.bdf, *f).is_some() {
                return Err(TopologyError::DuplicateFunction(f.bdf));
            }
        }
        for f in functions.values() {
            if let Some(p) = f.parent {
                if !functions.contains_key(&p) {
                    return Err(TopologyError::MissingParent {
                        child: f.bdf,
                        parent: p,
                    });
                }
            }
            if let Some(pf) = f.physfn {
                match functions.get(&pf) {
                    Some(p) if p.physfn.is_none() && pf != f.bdf => {}
                    _ => return Err(TopologyError::BadPhysfn { vf: f.bdf, pf }),
                }
            }
        }
        // Resolve host bridges top-down, detecting cycles with a step bound.
        let n = functions.len();
        let keys: Vec<Bdf> = functions.keys().copied().collect();
        let mut resolved: BTreeMap<Bdf, HostBridgeId> = BTreeMap::new();
        for &start in &keys {
            let mut cur = start;
            let mut steps = 0usize;
            let hb = loop {
                if let Some(hb) = resolved.get(&cur) {
                    break *hb;
                }
                let f = functions
                    .get(&cur)
                    .ok_or(TopologyError::UnknownFunction(cur))?;
                let next = match (f.parent, f.physfn) {
                    (Some(p), _) => Some(p),
                    (None, Some(pf)) => Some(pf),
                    (None, None) => None,
                };
                match next {
                    None => break f.host_bridge,
                    Some(p) => cur = p,
                }
                steps += 1;
                if steps > n {
                    return Err(TopologyError::Cycle(start));
                }
            };
            resolved.insert(start, hb);
        }
        for (bdf, hb) in &resolved {
            if let Some(f) = functions.get_mut(bdf) {
                f.host_bridge = *hb;
            }
        }
        let mut host_bridges = BTreeMap::new();
        for f in functions.values() {
            host_bridges.insert(
                f.host_bridge,
                HostBridge {
                    id: f.host_bridge,
                    below: None,
                },
            );
        }
        let mut bars: BTreeMap<Bdf, Bars> = BTreeMap::new();
        for &(bdf, bar) in &self.bars {
            if !functions.contains_key(&bdf) {
                return Err(TopologyError::UnknownFunction(bdf));
            }
            let set = bars.entry(bdf).or_default();
            *set = set.with(bar);
        }
        for &(hb, below) in &self.nested {
            if !functions.contains_key(&below) {
                return Err(TopologyError::MissingVmdFunction(below));
            }
            host_bridges.insert(
                hb,
                HostBridge {
                    id: hb,
                    below: Some(below),
                },
            );
        }
        let index = Index::new(&functions, &host_bridges);
        Ok(Topology {
            functions,
            bars,
            host_bridges,
            cpu: self.cpu,
            generation: next_generation(),
            index,
        })
    }
}
