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

/// What Linux 7.3 adds after the 6.12 entries, in its order:
/// `pci_p2pdma_whitelist[]` of `drivers/pci/p2pdma.c` in Debian's
/// `linux-source-7.3` 7.3.4-1~bpo13+1, the IDs from its
/// `include/linux/pci_ids.h`. The rest of the rules (`cpu_supports_p2pdma`,
/// `calc_map_type_and_dist`, `pci_bridge_has_acs_redir`,
/// `pci_host_bridge_dev`) are unchanged from 6.12.118, line for line; the one
/// other change is that an entry's device may be `PCI_ANY_ID`
/// ([`DeviceMatch::Any`]).
const LINUX_7_3_ADDITIONS: &[AllowlistEntry] = &[
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
    // Google SoCs: {PCI_VENDOR_ID_GOOGLE, PCI_ANY_ID, 0}.
    AllowlistEntry::new(GOOGLE, DeviceMatch::Any, NONE),
    // Nvidia CPUs
    AllowlistEntry::new(NVIDIA, DeviceMatch::Id(0x2f95), NONE),
    AllowlistEntry::new(NVIDIA, DeviceMatch::Id(0x2f96), NONE),
    AllowlistEntry::new(NVIDIA, DeviceMatch::Id(0x2f97), NONE),
    AllowlistEntry::new(NVIDIA, DeviceMatch::Id(0x2f98), NONE),
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
/// assert!(Allowlist::linux_7_3().lookup(0x1ae0, 0x0001).is_some());
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

    /// The list of Linux 7.3: 6.12's, plus Intel DSA/IAX/IAA/QAT, Google (any
    /// device) and NVIDIA 0x2f95 to 0x2f98.
    ///
    /// ```
    /// use dmaspace_pci::Allowlist;
    /// assert!(Allowlist::linux_7_3().lookup(0x8086, 0x0b25).is_some());
    /// assert!(Allowlist::linux_7_3().lookup(0x10de, 0x2f96).is_some());
    /// assert_eq!(Allowlist::linux_7_3().entries().len(), 25);
    /// ```
    #[must_use]
    pub fn linux_7_3() -> Self {
        let mut entries = LINUX_6_12.to_vec();
        entries.extend_from_slice(LINUX_7_3_ADDITIONS);
        Self::new(entries)
    }

    /// The list of the newest kernel this crate names: [`linux_7_3`](Self::linux_7_3).
    ///
    /// ```
    /// use dmaspace_pci::Allowlist;
    /// assert_eq!(Allowlist::current(), Allowlist::linux_7_3());
    /// ```
    #[must_use]
    pub fn current() -> Self {
        Self::linux_7_3()
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

    /// Linux 7.3's allowlist.
    ///
    /// ```
    /// use dmaspace_pci::{Allowlist, Policy};
    /// assert_eq!(Policy::linux_7_3().allowlist, Allowlist::linux_7_3());
    /// ```
    #[must_use]
    pub fn linux_7_3() -> Self {
        Self::new(Allowlist::linux_7_3())
    }

    /// The newest kernel's (Linux 7.3; same as `default()`).
    ///
    /// ```
    /// use dmaspace_pci::Policy;
    /// assert_eq!(Policy::current(), Policy::default());
    /// assert_eq!(Policy::current(), Policy::linux_7_3());
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
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct KernelPolicy {
    policy: Policy,
    name: &'static str,
}

impl Default for KernelPolicy {
    fn default() -> Self {
        Self::current()
    }
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
            name: "linux-6.12",
        }
    }

    /// `pci_p2pdma_whitelist[]` of Linux 7.3 (read in 7.3.4).
    ///
    /// ```
    /// use dmaspace_pci::KernelPolicy;
    /// assert!(KernelPolicy::linux_7_3().policy().allowlist.lookup(0x1ae0, 1).is_some());
    /// ```
    #[must_use]
    pub fn linux_7_3() -> Self {
        Self {
            policy: Policy::linux_7_3(),
            name: "linux-7.3",
        }
    }

    /// The newest kernel this crate names, [`linux_7_3`](Self::linux_7_3); the default.
    ///
    /// ```
    /// use dmaspace_pci::KernelPolicy;
    /// assert_eq!(KernelPolicy::current(), KernelPolicy::linux_7_3());
    /// ```
    #[must_use]
    pub fn current() -> Self {
        Self::linux_7_3()
    }

    /// The policy of the kernel whose release is `release` (as `uname -r`
    /// or `/proc/sys/kernel/osrelease` say it): 6.12.x is
    /// [`linux_6_12`](Self::linux_6_12), 7.3.x [`linux_7_3`](Self::linux_7_3).
    ///
    /// # Errors
    /// [`UnknownKernel`] for any other release: the allowlist changed
    /// between those kernels, and guessing a list the running kernel does
    /// not use would hand out routes it refuses.
    ///
    /// ```
    /// use dmaspace_pci::KernelPolicy;
    /// assert_eq!(KernelPolicy::for_release("6.12.118-amd64")?, KernelPolicy::linux_6_12());
    /// assert_eq!(KernelPolicy::for_release("7.3.4+bpo-amd64")?, KernelPolicy::linux_7_3());
    /// assert!(KernelPolicy::for_release("6.1.0-40-amd64").is_err());
    /// assert!(KernelPolicy::for_release("6.120.1").is_err());
    /// # Ok::<(), dmaspace_pci::UnknownKernel>(())
    /// ```
    pub fn for_release(release: &str) -> Result<Self, UnknownKernel> {
        let release = release.trim();
        let mut parts = release.split(|c: char| !c.is_ascii_digit());
        let major = parts.next();
        let minor = parts.next();
        match (major, minor) {
            (Some("6"), Some("12")) => Ok(Self::linux_6_12()),
            (Some("7"), Some("3")) => Ok(Self::linux_7_3()),
            _ => Err(UnknownKernel {
                release: release.into(),
            }),
        }
    }

    /// The kernel's name: `linux-6.12` or `linux-7.3`.
    ///
    /// ```
    /// use dmaspace_pci::KernelPolicy;
    /// assert_eq!(KernelPolicy::linux_6_12().name(), "linux-6.12");
    /// ```
    #[must_use]
    pub fn name(&self) -> &'static str {
        self.name
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

/// A kernel release for which this crate has no named policy
/// ([`KernelPolicy::for_release`]).
///
/// ```
/// let e = dmaspace_pci::KernelPolicy::for_release("5.15.0").unwrap_err();
/// assert_eq!(e.to_string(), "no P2PDMA policy for kernel 5.15.0: this crate names linux-6.12 and linux-7.3");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownKernel {
    /// The release as given.
    pub release: alloc::string::String,
}

impl core::fmt::Display for UnknownKernel {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "no P2PDMA policy for kernel {}: this crate names linux-6.12 and linux-7.3",
            self.release
        )
    }
}

impl core::error::Error for UnknownKernel {}

impl From<KernelPolicy> for Policy {
    #[inline]
    fn from(k: KernelPolicy) -> Self {
        k.policy
    }
}
