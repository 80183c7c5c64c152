//! THE seam: the one place where this driver produces a device-visible address.
//!
//! Every address the driver writes for the controller — PRP1, PRP2, each PRP
//! list entry and list pointer, the admin queue base registers (ASQ/ACQ), the
//! base of every I/O queue in Create I/O SQ/CQ — is a [`DevAddr`], and a
//! `DevAddr` comes only from [`device_addr`] (or from the `unsafe` escape
//! [`DevAddr::assume_valid`], used once, by the `iommu-contains` negative
//! control). Nothing else in the crate turns an integer into an address.
//!
//! When dmaspace's typed mapping API (issue 9) lands, this function is what
//! switches to it:
//! - [`Target::Host`] becomes a `DmaAddr<B>` from the crate's VFIO type1 /
//!   iommufd / direct backend (today: the raw IOVA or the pagemap physical
//!   address recorded in [`HostBuf`]);
//! - [`Target::Peer`] becomes the route `P2pRoute::classify` chose from the
//!   guest's sysfs: a `BusAddr` (switch) or an IOVA of the peer's BAR mapped
//!   into this domain (host bridge) (today: [`PeerWindow`]);
//! - [`Target::OwnCmb`] becomes a `BarOffset` of this controller (today:
//!   [`Cmb`]'s controller base address plus the offset).
//!
//! The checks made here are the ones the types will make at compile time: the
//! buffer is mapped, in this controller's DMA domain, the offset is inside it,
//! a peer window was classified for this client, the CMB is this controller's.

use core::fmt;

use dmaspace::linux::PciAddress;

use crate::dma::{DomainId, HostBuf, HostDma, PeerRoute, PeerWindow};
use crate::nvme::Cmb;

/// A device-visible DMA address, valid for one controller. No arithmetic: a
/// new one comes from [`device_addr`] again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DevAddr(u64);

impl DevAddr {
    /// The value written into the command or register.
    #[must_use]
    pub fn raw(self) -> u64 {
        self.0
    }

    /// An address from a bare integer, bypassing the seam.
    ///
    /// # Safety
    ///
    /// The controller will DMA to or from `raw`. The caller guarantees that
    /// whatever `raw` reaches in the controller's DMA domain (an IOVA, or a
    /// physical address without IOMMU) is memory the device may access for the
    /// whole command, or that the IOMMU blocks it — the `iommu-contains`
    /// negative control relies on the latter, for an IOVA it has just unmapped.
    #[must_use]
    pub unsafe fn assume_valid(raw: u64) -> Self {
        Self(raw)
    }
}

impl fmt::LowerHex for DevAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::LowerHex::fmt(&self.0, f)
    }
}

/// What a command may point at.
#[derive(Clone, Copy, Debug)]
pub enum Target<'a> {
    /// Host memory mapped by the controller's DMA backend, at `offset`.
    Host(&'a HostBuf, usize),
    /// A peer's BAR, reached by the route classified for this client, at `offset`.
    Peer(&'a PeerWindow, usize),
    /// The controller's own CMB, at `offset` (a BAR offset: never on the wire).
    OwnCmb(&'a Cmb, usize),
}

impl<'a> Target<'a> {
    /// The same target, `more` bytes further.
    #[must_use]
    pub fn advance(self, more: usize) -> Self {
        match self {
            Self::Host(b, o) => Self::Host(b, o.saturating_add(more)),
            Self::Peer(w, o) => Self::Peer(w, o.saturating_add(more)),
            Self::OwnCmb(c, o) => Self::OwnCmb(c, o.saturating_add(more)),
        }
    }
}

/// Why the seam refused to produce an address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SeamError {
    /// The buffer is not mapped (any more) in its domain.
    NotMapped,
    /// The buffer or window belongs to another DMA domain than the controller's.
    WrongDomain {
        /// The controller's domain.
        want: DomainId,
        /// The buffer's.
        got: DomainId,
    },
    /// The peer window was classified for another client.
    WrongClient {
        /// The controller asking.
        client: PciAddress,
        /// The client the route was classified for.
        route_for: PciAddress,
    },
    /// The CMB is another controller's.
    NotOwnCmb {
        /// The controller asking.
        who: PciAddress,
        /// The CMB's owner.
        owner: PciAddress,
    },
    /// The offset is past the end.
    OutOfRange {
        /// Offset asked for.
        offset: usize,
        /// Length of the buffer, window or CMB.
        len: usize,
    },
}

impl fmt::Display for SeamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotMapped => f.write_str("buffer is not mapped for DMA"),
            Self::WrongDomain { want, got } => {
                write!(
                    f,
                    "buffer of DMA domain {got:?} used by a controller of domain {want:?}"
                )
            }
            Self::WrongClient { client, route_for } => {
                write!(f, "peer route classified for {route_for}, used by {client}")
            }
            Self::NotOwnCmb { who, owner } => write!(f, "CMB of {owner} used as own CMB by {who}"),
            Self::OutOfRange { offset, len } => {
                write!(f, "offset {offset:#x} outside {len:#x} bytes")
            }
        }
    }
}

/// THE seam: the device address of `target` for the controller `who`, whose
/// DMA domain is `domain`.
///
/// # Errors
///
/// [`SeamError`] when the target is not reachable by this controller.
pub fn device_addr(
    domain: DomainId,
    who: PciAddress,
    target: Target<'_>,
) -> Result<DevAddr, SeamError> {
    let within = |offset: usize, len: usize| {
        if offset < len {
            Ok(offset as u64)
        } else {
            Err(SeamError::OutOfRange { offset, len })
        }
    };
    match target {
        Target::Host(buf, offset) => {
            if buf.domain() != domain {
                return Err(SeamError::WrongDomain {
                    want: domain,
                    got: buf.domain(),
                });
            }
            let off = within(offset, buf.len())?;
            match buf.dma() {
                HostDma::Iova(base) => Ok(DevAddr(base + off)),
                HostDma::Phys { pages, page } => {
                    let p = pages[offset / page];
                    Ok(DevAddr(p + (offset % page) as u64))
                }
                HostDma::Unmapped => Err(SeamError::NotMapped),
            }
        }
        Target::Peer(w, offset) => {
            if w.client() != who {
                return Err(SeamError::WrongClient {
                    client: who,
                    route_for: w.client(),
                });
            }
            let off = within(offset, w.len())?;
            match w.route() {
                PeerRoute::Iova { domain: d, base } => {
                    if d != domain {
                        return Err(SeamError::WrongDomain {
                            want: domain,
                            got: d,
                        });
                    }
                    Ok(DevAddr(base + off))
                }
                PeerRoute::BusAddr { base } => Ok(DevAddr(base + off)),
            }
        }
        Target::OwnCmb(cmb, offset) => {
            if cmb.owner() != who {
                return Err(SeamError::NotOwnCmb {
                    who,
                    owner: cmb.owner(),
                });
            }
            let off = within(offset, cmb.len())?;
            Ok(DevAddr(cmb.controller_base() + off))
        }
    }
}
