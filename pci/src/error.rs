//! What can go wrong with a topology or a question asked of it.

use core::fmt;

use super::bdf::Bdf;

/// Something wrong with a topology or a question asked of it.
///
/// ```
/// use dmaspace_pci::{Bdf, Policy, Topology, TopologyError};
/// let topo = Topology::builder().build()?;
/// let a = Bdf::new(0, 1, 0, 0);
/// assert_eq!(topo.verdict(a, a, &Policy::default()), Err(TopologyError::UnknownFunction(a)));
/// # Ok::<(), TopologyError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TopologyError {
    /// No function with this address.
    UnknownFunction(Bdf),
    /// Two functions with one address.
    DuplicateFunction(Bdf),
    /// `child` names `parent` as its upstream bridge, but there is no such function.
    MissingParent {
        /// The function.
        child: Bdf,
        /// The bridge it names.
        parent: Bdf,
    },
    /// `vf` names `pf` as its PF, but there is no such function, or it is itself a VF.
    BadPhysfn {
        /// The VF.
        vf: Bdf,
        /// The PF it names.
        pf: Bdf,
    },
    /// Following upstream bridges from this function comes back to it.
    Cycle(Bdf),
    /// A host bridge is declared below a function that does not exist.
    MissingVmdFunction(Bdf),
}

impl fmt::Display for TopologyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownFunction(b) => write!(f, "no PCI function {b} in the topology"),
            Self::DuplicateFunction(b) => write!(f, "PCI function {b} given twice"),
            Self::MissingParent { child, parent } => {
                write!(
                    f,
                    "{child} sits below {parent}, which is not in the topology"
                )
            }
            Self::BadPhysfn { vf, pf } => {
                write!(
                    f,
                    "{vf} names {pf} as its PF, which is missing or itself a VF"
                )
            }
            Self::Cycle(b) => write!(f, "the upstream bridges of {b} form a cycle"),
            Self::MissingVmdFunction(b) => {
                write!(
                    f,
                    "a host bridge sits below {b}, which is not in the topology"
                )
            }
        }
    }
}

impl core::error::Error for TopologyError {}
