//! The host-bridge allowlist (`pci_p2pdma_whitelist[]`) as data, and the policy.

use alloc::sync::Arc;
use alloc::vec::Vec;

bitflags::bitflags! {
    /// Flags of an allowlist entry.
    ///
    /// ```
    /// use dmaspace_pci::AllowFlags;
    /// assert!(AllowFlags::REQ_SAME_HOST_BRIDGE.contains(AllowFlags::REQ_SAME_HOST_BRIDGE));
    /// ```
    #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
    pub struct AllowFlags: u8 {
        /// Only pairs below this very host bridge are allowed (`REQ_SAME_HOST_BRIDGE`).
        const REQ_SAME_HOST_BRIDGE = 1 << 0;
    }
}

/// Which device IDs an entry matches.
///
/// ```
/// use dmaspace_pci::DeviceMatch;
/// assert!(DeviceMatch::Any.matches(0x1234));
/// assert!(DeviceMatch::Id(0x2f00).matches(0x2f00));
/// assert!(!DeviceMatch::Id(0x2f00).matches(0x2f01));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DeviceMatch {
    /// Exactly this device ID.
    Id(u16),
    /// Any device ID of the vendor (`PCI_ANY_ID`).
    Any,
}

impl DeviceMatch {
    /// Whether `device` matches.
    ///
    /// ```
    /// use dmaspace_pci::DeviceMatch;
    /// assert!(DeviceMatch::Any.matches(0));
    /// ```
    #[must_use]
    pub const fn matches(self, device: u16) -> bool {
        match self {
            Self::Id(id) => id == device,
            Self::Any => true,
        }
    }
}

/// One allowlist entry: (vendor, device or any, flags).
///
/// ```
/// use dmaspace_pci::{AllowFlags, AllowlistEntry, DeviceMatch};
/// let e = AllowlistEntry::new(0x8086, DeviceMatch::Id(0x3c00), AllowFlags::REQ_SAME_HOST_BRIDGE);
/// assert!(e.matches(0x8086, 0x3c00));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AllowlistEntry {
    /// Vendor ID of the host bridge device.
    pub vendor: u16,
    /// Its device ID, or any.
    pub device: DeviceMatch,
    /// Flags.
    pub flags: AllowFlags,
}

impl AllowlistEntry {
    /// An entry.
    ///
    /// ```
    /// use dmaspace_pci::{AllowFlags, AllowlistEntry, DeviceMatch};
    /// let google = AllowlistEntry::new(0x1ae0, DeviceMatch::Any, AllowFlags::empty());
    /// assert!(google.matches(0x1ae0, 0x0042));
    /// ```
    #[must_use]
    pub const fn new(vendor: u16, device: DeviceMatch, flags: AllowFlags) -> Self {
        Self {
            vendor,
            device,
            flags,
        }
    }

    /// Whether it matches (vendor, device).
    ///
    /// ```
    /// use dmaspace_pci::{AllowFlags, AllowlistEntry, DeviceMatch};
    /// let e = AllowlistEntry::new(0x8086, DeviceMatch::Id(0x09a2), AllowFlags::empty());
    /// assert!(!e.matches(0x1022, 0x09a2));
    /// ```
    #[must_use]
    pub const fn matches(&self, vendor: u16, device: u16) -> bool {
        self.vendor == vendor && self.device.matches(device)
    }
}

const INTEL: u16 = 0x8086;
const GOOGLE: u16 = 0x1ae0;
const NVIDIA: u16 = 0x10de;
const SAME: AllowFlags = AllowFlags::REQ_SAME_HOST_BRIDGE;
const NONE: AllowFlags = AllowFlags::empty();

/// `pci_p2pdma_whitelist[]` of Linux 6.12 (drivers/pci/p2pdma.c, checked in 6.12.117).
const LINUX_6_12: &[AllowlistEntry] = &[
    // Intel Xeon E5/Core i7
    AllowlistEntry::new(INTEL, DeviceMatch::Id(0x3c00), SAME),
    AllowlistEntry::new(INTEL, DeviceMatch::Id(0x3c01), SAME),
    // Intel Xeon E7 v3/Xeon E5 v3/Core i7
    AllowlistEntry::new(INTEL, DeviceMatch::Id(0x2f00), SAME),
    AllowlistEntry::new(INTEL, DeviceMatch::Id(0x2f01), SAME),
    // Intel Skylake-E
    AllowlistEntry::new(INTEL, DeviceMatch::Id(0x2030), NONE),
    AllowlistEntry::new(INTEL, DeviceMatch::Id(0x2031), NONE),
    AllowlistEntry::new(INTEL, DeviceMatch::Id(0x2032), NONE),
    AllowlistEntry::new(INTEL, DeviceMatch::Id(0x2033), NONE),
    AllowlistEntry::new(INTEL, DeviceMatch::Id(0x2020), NONE),
    // Intel 3rd Gen Xeon Scalable (Ice Lake) and later: first device on the root bus
    AllowlistEntry::new(INTEL, DeviceMatch::Id(0x09a2), NONE),
];

/// What today's tree adds after the 6.12 entries.
const CURRENT_ADDITIONS: &[AllowlistEntry] = &[
    // Intel Xeon accelerators exposed as the first device of a root bus of their own,
    // upstream commit 0ba76b19fd4c ("PCI/P2PDMA: Add Intel QAT, DSA, IAA devices to
    // whitelist"); IDs from include/linux/pci_ids.h after that commit:
    AllowlistEntry::new(INTEL, DeviceMatch::Id(0x0b25), NONE), // DSA_SPR0
    AllowlistEntry::new(INTEL, DeviceMatch::Id(0x0cfe), NONE), // IAX_SPR0
    AllowlistEntry::new(INTEL, DeviceMatch::Id(0x11fb), NONE), // DSA_GNRD
    AllowlistEntry::new(INTEL, DeviceMatch::Id(0x1212), NONE), // DSA_DMR
    AllowlistEntry::new(INTEL, DeviceMatch::Id(0x1216), NONE), // IAA_DMR
    AllowlistEntry::new(INTEL, DeviceMatch::Id(0x4940), NONE), // QAT_4XXX
    AllowlistEntry::new(INTEL, DeviceMatch::Id(0x4942), NONE), // QAT_401XX
    AllowlistEntry::new(INTEL, DeviceMatch::Id(0x4944), NONE), // QAT_402XX
    AllowlistEntry::new(INTEL, DeviceMatch::Id(0x4946), NONE), // QAT_420XX
    AllowlistEntry::new(INTEL, DeviceMatch::Id(0x4948), NONE), // QAT_6XXX
    // NVIDIA Grace root complex, 0x2f95..=0x2f98: as given by the project brief. We
    // could not find these entries in the upstream p2pdma.c versions available to us;
    // they are kept as plain entries (no REQ_SAME_HOST_BRIDGE) until checked.
    AllowlistEntry::new(NVIDIA, DeviceMatch::Id(0x2f95), NONE),
    AllowlistEntry::new(NVIDIA, DeviceMatch::Id(0x2f96), NONE),
    AllowlistEntry::new(NVIDIA, DeviceMatch::Id(0x2f97), NONE),
    AllowlistEntry::new(NVIDIA, DeviceMatch::Id(0x2f98), NONE),
    // Google SoCs: {PCI_VENDOR_ID_GOOGLE, PCI_ANY_ID, 0}.
    AllowlistEntry::new(GOOGLE, DeviceMatch::Any, NONE),
];

/// A host-bridge allowlist. The kernel takes the first entry that matches the host
/// bridge device's (vendor, device); so does [`Allowlist::lookup`].
///
/// The entries are shared and never change after construction: a clone is a pointer
/// copy, and comparing a list with a clone of itself is a pointer comparison (what
/// lets [`VerdictCache`](super::VerdictCache) check its policy on every lookup).
///
/// ```
/// use dmaspace_pci::{AllowFlags, Allowlist, AllowlistEntry, DeviceMatch};
/// assert!(Allowlist::current().lookup(0x1ae0, 0x0001).is_some());
/// assert!(Allowlist::linux_6_12().lookup(0x1ae0, 0x0001).is_none());
/// let mine = Allowlist::new(vec![AllowlistEntry::new(0x1022, DeviceMatch::Id(0x1480), AllowFlags::empty())]);
/// assert!(mine.lookup(0x1022, 0x1480).is_some());
/// assert!(Allowlist::empty().entries().is_empty());
/// ```
#[derive(Clone, Debug, Eq)]
pub struct Allowlist {
    entries: Arc<[AllowlistEntry]>,
}

impl PartialEq for Allowlist {
    /// Equal entries; a list and its clones compare by pointer.
    #[inline]
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.entries, &other.entries) || self.same_entries(other)
    }
}

impl core::hash::Hash for Allowlist {
    /// The entries (equal lists hash alike, shared or not).
    fn hash<H: core::hash::Hasher>(&self, state: &mut H) {
        self.entries.hash(state);
    }
}

impl Allowlist {
    #[cold]
    #[inline(never)]
    fn same_entries(&self, other: &Self) -> bool {
        self.entries == other.entries
    }
}

impl Allowlist {
    /// A custom list.
    ///
    /// ```
    /// use dmaspace_pci::Allowlist;
    /// assert_eq!(Allowlist::new(Vec::new()), Allowlist::empty());
    /// ```
    #[must_use]
    pub fn new(entries: Vec<AllowlistEntry>) -> Self {
        Self {
            entries: entries.into(),
        }
    }

    /// No entries: only the CPU rule can allow host-bridge routes.
    ///
    /// ```
    /// use dmaspace_pci::Allowlist;
    /// assert!(Allowlist::empty().lookup(0x8086, 0x2030).is_none());
    /// ```
    #[must_use]
    pub fn empty() -> Self {
        Self::new(Vec::new())
    }

    /// The list of Linux 6.12.
    ///
    /// ```
    /// use dmaspace_pci::Allowlist;
    /// assert_eq!(Allowlist::linux_6_12().entries().len(), 10);
    /// ```
    #[must_use]
    pub fn linux_6_12() -> Self {
        Self::new(LINUX_6_12.to_vec())
    }

    /// Today's list: 6.12's, plus Intel DSA/IAX/QAT, NVIDIA Grace, Google any device.
    ///
    /// ```
    /// use dmaspace_pci::Allowlist;
    /// assert!(Allowlist::current().lookup(0x8086, 0x0b25).is_some());
    /// assert!(Allowlist::current().lookup(0x10de, 0x2f96).is_some());
    /// ```
    #[must_use]
    pub fn current() -> Self {
        let mut entries = LINUX_6_12.to_vec();
        entries.extend_from_slice(CURRENT_ADDITIONS);
        Self::new(entries)
    }

    /// The entries, in match order.
    ///
    /// ```
    /// use dmaspace_pci::Allowlist;
    /// assert!(Allowlist::current().entries().len() > Allowlist::linux_6_12().entries().len());
    /// ```
    #[must_use]
    pub fn entries(&self) -> &[AllowlistEntry] {
        &self.entries
    }

    /// The first entry matching (vendor, device).
    ///
    /// ```
    /// use dmaspace_pci::{AllowFlags, Allowlist};
    /// let e = Allowlist::linux_6_12().lookup(0x8086, 0x3c00).copied();
    /// assert_eq!(e.map(|e| e.flags), Some(AllowFlags::REQ_SAME_HOST_BRIDGE));
    /// ```
    #[must_use]
    pub fn lookup(&self, vendor: u16, device: u16) -> Option<&AllowlistEntry> {
        self.entries.iter().find(|e| e.matches(vendor, device))
    }
}

impl Default for Allowlist {
    fn default() -> Self {
        Self::current()
    }
}

/// What the caller decides: which host-bridge allowlist the rules apply.
///
/// The CPU is not part of the policy: it belongs to the machine, so it lives in the
/// [`Topology`](super::Topology) (read from `/proc/cpuinfo`, or set with
/// [`TopologyBuilder::cpu`](super::TopologyBuilder::cpu) /
/// [`Topology::set_cpu`](super::Topology::set_cpu) to ask "what if"). `Policy::default()`
/// is today's allowlist.
///
/// ```
/// use dmaspace_pci::{Allowlist, Policy};
/// assert_eq!(Policy::default().allowlist, Allowlist::current());
/// assert_eq!(Policy::new(Allowlist::empty()).allowlist.entries().len(), 0);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct Policy {
    /// The host-bridge allowlist.
    pub allowlist: Allowlist,
}

impl Policy {
    /// A policy with this allowlist.
    ///
    /// ```
    /// use dmaspace_pci::{Allowlist, Policy};
    /// assert_eq!(Policy::new(Allowlist::linux_6_12()), Policy::linux_6_12());
    /// ```
    #[must_use]
    pub const fn new(allowlist: Allowlist) -> Self {
        Self { allowlist }
    }

    /// Linux 6.12's allowlist.
    ///
    /// ```
    /// use dmaspace_pci::{Allowlist, Policy};
    /// assert_eq!(Policy::linux_6_12().allowlist, Allowlist::linux_6_12());
    /// ```
    #[must_use]
    pub fn linux_6_12() -> Self {
        Self::new(Allowlist::linux_6_12())
    }

    /// Today's allowlist (same as `default()`).
    ///
    /// ```
    /// use dmaspace_pci::Policy;
    /// assert_eq!(Policy::current(), Policy::default());
    /// ```
    #[must_use]
    pub fn current() -> Self {
        Self::default()
    }
}

/// A [`Policy`] that is one of the kernels' own allowlists, named by the kernel
/// it was read from: the only policies `dmaspace`'s `Machine::with_policy` takes
/// without `unsafe`.
///
/// A policy decides which pairs are routed through the host bridge; a machine
/// that classifies with a list the running kernel does not use hands out routes
/// the kernel refuses. A hand-made [`Allowlist`] is fine for the pure
/// classification ([`Topology::verdict`](super::Topology::verdict) takes any
/// [`Policy`]), but not for a machine: there it is
/// `Machine::with_custom_policy`'s promise.
///
/// ```
/// use dmaspace_pci::{KernelPolicy, Policy};
/// assert_eq!(KernelPolicy::linux_6_12().policy(), &Policy::linux_6_12());
/// assert_eq!(Policy::from(KernelPolicy::current()), Policy::current());
/// assert_eq!(KernelPolicy::default(), KernelPolicy::current());
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct KernelPolicy {
    policy: Policy,
}

impl KernelPolicy {
    /// `pci_p2pdma_whitelist[]` of Linux 6.12.
    ///
    /// ```
    /// use dmaspace_pci::KernelPolicy;
    /// assert_eq!(KernelPolicy::linux_6_12().policy().allowlist.entries().len(), 10);
    /// ```
    #[must_use]
    pub fn linux_6_12() -> Self {
        Self {
            policy: Policy::linux_6_12(),
        }
    }

    /// Today's list (6.12's plus Intel DSA/IAX/QAT, NVIDIA Grace, Google any
    /// device, as in Linux 7.3.4); the default.
    ///
    /// ```
    /// use dmaspace_pci::KernelPolicy;
    /// assert!(KernelPolicy::current().policy().allowlist.lookup(0x1ae0, 1).is_some());
    /// ```
    #[must_use]
    pub fn current() -> Self {
        Self {
            policy: Policy::current(),
        }
    }

    /// The policy, to classify with.
    ///
    /// ```
    /// use dmaspace_pci::{KernelPolicy, Policy};
    /// assert_eq!(KernelPolicy::current().policy(), &Policy::default());
    /// ```
    #[must_use]
    pub fn policy(&self) -> &Policy {
        &self.policy
    }
}

impl From<KernelPolicy> for Policy {
    #[inline]
    fn from(k: KernelPolicy) -> Self {
        k.policy
    }
}
