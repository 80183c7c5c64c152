//! P2P islands: the groups of functions that reach each other with bus addresses.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use super::allowlist::Policy;
use super::bdf::{Bdf, HostBridgeId};
use super::error::TopologyError;
use super::function::PciFunction;
use super::tree::Topology;

/// Functions that reach each other by bus address: any two members get
/// [`MapType::BusAddr`](super::MapType::BusAddr) from [`Topology::verdict`], and no
/// member does with a function outside.
///
/// The bus-address relation of the kernel is an equivalence on a tree: a pair is
/// `bus_addr` exactly when every node of the path between them (the common upstream
/// bridge included) is known to have no ACS redirect. So an island is a connected piece
/// of the tree: a top bridge and the functions below it that no redirect cuts off.
/// Members include the bridges of the island; [`Topology::islands`] lists only islands
/// with at least two devices (functions that are not bridges), the ones where P2P
/// between devices is possible.
///
/// ```
/// use dmaspace_pci::{Bdf, PciFunction, PciePortType, Topology};
/// let rp = Bdf::new(0, 0, 2, 0);
/// let (d0, d1) = (Bdf::new(0, 1, 0, 0), Bdf::new(0, 1, 0, 1));
/// let topo = Topology::builder()
///     .function(PciFunction::new(rp, 0x1b36, 0x000c).with_port(PciePortType::RootPort))
///     .function(PciFunction::new(d0, 0x1b36, 0x0010).under(rp))
///     .function(PciFunction::new(d1, 0x1b36, 0x0010).under(rp))
///     .build()?;
/// let islands = topo.islands()?;
/// assert_eq!(islands.len(), 1);
/// assert_eq!((islands[0].top, islands[0].members.len()), (rp, 3));
/// assert_eq!(islands[0].devices(&topo).count(), 2);
/// # Ok::<(), dmaspace_pci::TopologyError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Island {
    /// The member every other member is below: the common upstream bridge of them all.
    pub top: Bdf,
    /// The host bridge the island is below.
    pub host_bridge: HostBridgeId,
    /// The members, bridges included, in [`Bdf`] order.
    pub members: Vec<Bdf>,
}

impl Island {
    /// The members that are not bridges.
    ///
    /// ```
    /// use dmaspace_pci::{Bdf, PciFunction, PciePortType, Topology};
    /// let rp = Bdf::new(0, 0, 2, 0);
    /// let topo = Topology::builder()
    ///     .function(PciFunction::new(rp, 1, 1).with_port(PciePortType::RootPort))
    ///     .function(PciFunction::new(Bdf::new(0, 1, 0, 0), 1, 2).under(rp))
    ///     .function(PciFunction::new(Bdf::new(0, 1, 0, 1), 1, 2).under(rp))
    ///     .build()?;
    /// let island = &topo.islands()?[0];
    /// assert!(island.devices(&topo).all(|f| !f.is_bridge()));
    /// # Ok::<(), dmaspace_pci::TopologyError>(())
    /// ```
    pub fn devices<'t>(&'t self, topology: &'t Topology) -> impl Iterator<Item = &'t PciFunction> {
        self.members
            .iter()
            .filter_map(|&b| topology.function(b))
            .filter(|f| !f.is_bridge())
    }

    /// Whether `bdf` is a member.
    ///
    /// ```
    /// use dmaspace_pci::{Bdf, PciFunction, PciePortType, Topology};
    /// let rp = Bdf::new(0, 0, 2, 0);
    /// let topo = Topology::builder()
    ///     .function(PciFunction::new(rp, 1, 1).with_port(PciePortType::RootPort))
    ///     .function(PciFunction::new(Bdf::new(0, 1, 0, 0), 1, 2).under(rp))
    ///     .function(PciFunction::new(Bdf::new(0, 1, 0, 1), 1, 2).under(rp))
    ///     .build()?;
    /// assert!(topo.islands()?[0].contains(rp));
    /// # Ok::<(), dmaspace_pci::TopologyError>(())
    /// ```
    #[must_use]
    pub fn contains(&self, bdf: Bdf) -> bool {
        self.members.binary_search(&bdf).is_ok()
    }
}

fn find(parent: &mut [usize], mut i: usize) -> usize {
    while parent[i] != i {
        parent[i] = parent[parent[i]];
        i = parent[i];
    }
    i
}

impl Topology {
    /// The P2P islands with at least two devices, ordered by their top bridge.
    ///
    /// Each function is joined to its upstream bridge when [`Topology::verdict`] says
    /// `bus_addr` between the two (which, on a tree, is when neither redirects and both
    /// ACS are known); islands are the groups so joined. The host-bridge allowlist and
    /// the CPU play no part: they only decide routes through the host bridge.
    ///
    /// ```
    /// use dmaspace_pci::{AcsCtrl, AcsState, Bdf, PciFunction, PciePortType, Topology};
    /// let rp = Bdf::new(0, 0, 2, 0);
    /// let mut topo = Topology::builder()
    ///     .function(PciFunction::new(rp, 1, 1).with_port(PciePortType::RootPort))
    ///     .function(PciFunction::new(Bdf::new(0, 1, 0, 0), 1, 2).under(rp))
    ///     .function(PciFunction::new(Bdf::new(0, 1, 0, 1), 1, 2).under(rp))
    ///     .build()?;
    /// assert_eq!(topo.islands()?.len(), 1);
    /// topo.set_acs(rp, AcsState::Control(AcsCtrl::RR))?;
    /// assert!(topo.islands()?.is_empty());
    /// # Ok::<(), dmaspace_pci::TopologyError>(())
    /// ```
    pub fn islands(&self) -> Result<Vec<Island>, TopologyError> {
        let index: BTreeMap<Bdf, usize> = self
            .functions
            .keys()
            .enumerate()
            .map(|(i, &b)| (b, i))
            .collect();
        let bdfs: Vec<Bdf> = self.functions.keys().copied().collect();
        let mut parent: Vec<usize> = (0..bdfs.len()).collect();
        // Only bus_addr matters here, which neither the allowlist nor the CPU decides.
        let policy = Policy::new(super::allowlist::Allowlist::empty());
        for (i, &b) in bdfs.iter().enumerate() {
            let Some(up) = self.upstream_bridge(b)? else {
                continue;
            };
            if self.verdict(b, up, &policy)?.is_bus_addr() {
                let j = index
                    .get(&up)
                    .copied()
                    .ok_or(TopologyError::UnknownFunction(up))?;
                let (ri, rj) = (find(&mut parent, i), find(&mut parent, j));
                parent[ri] = rj;
            }
        }
        let mut groups: BTreeMap<usize, Vec<Bdf>> = BTreeMap::new();
        for (i, &b) in bdfs.iter().enumerate() {
            let r = find(&mut parent, i);
            groups.entry(r).or_default().push(b);
        }
        let mut out = Vec::new();
        for members in groups.into_values() {
            let devices = members
                .iter()
                .filter_map(|&b| self.function(b))
                .filter(|f| !f.is_bridge())
                .count();
            if devices < 2 {
                continue;
            }
            let mut top = members[0];
            for &m in &members {
                match self.upstream_bridge(m)? {
                    Some(up) if members.binary_search(&up).is_ok() => {}
                    _ => top = m,
                }
            }
            let host_bridge = self
                .function(top)
                .map(|f| f.host_bridge)
                .ok_or(TopologyError::UnknownFunction(top))?;
            out.push(Island {
                top,
                host_bridge,
                members,
            });
        }
        out.sort_by_key(|i| i.top);
        Ok(out)
    }
}
