//! Why a mapper over a VFIO domain was refused: the proof that the device
//! is attached to the domain's IOMMU context did not hold.

use core::fmt;

use dmaspace::error::ClaimError;
use dmaspace::pci::Bdf;

/// Why [`type1_mapper`](super::vfio::type1_mapper) or
/// [`iommufd_mapper`](super::iommufd::iommufd_mapper) refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AttachError {
    /// The VFIO device was not opened from a group attached to the domain's
    /// container (a cdev, or another container).
    NotInContainer {
        /// The VFIO device's function.
        vfio: Bdf,
    },
    /// The VFIO device is not bound to the domain's iommufd and attached to
    /// its IOAS.
    NotAttached {
        /// The VFIO device's function.
        vfio: Bdf,
    },
    /// The VFIO device and the `Device` are different functions.
    OtherFunction {
        /// The VFIO device's function.
        vfio: Bdf,
        /// The `Device`'s function.
        device: Bdf,
    },
    /// The device has a live mapper already.
    Claim(ClaimError),
}

impl fmt::Display for AttachError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotInContainer { vfio } => write!(
                f,
                "{vfio} was not opened from a group attached to the domain's container"
            ),
            Self::NotAttached { vfio } => {
                write!(f, "{vfio} is not attached to the domain's IOAS")
            }
            Self::OtherFunction { vfio, device } => write!(
                f,
                "the VFIO device is {vfio}, the Device is {device}: not the same function"
            ),
            Self::Claim(e) => write!(f, "{e}"),
        }
    }
}

impl core::error::Error for AttachError {}

/// The checks both constructors share, apart from the claim: `attached`
/// (the device is in the domain's context) and the same function.
pub(super) fn vouch(
    attached: bool,
    not_attached: AttachError,
    vfio: Bdf,
    device: Bdf,
) -> Result<(), AttachError> {
    if !attached {
        return Err(not_attached);
    }
    if vfio != device {
        return Err(AttachError::OtherFunction { vfio, device });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Bdf = Bdf::new(0, 3, 0, 0);
    const B: Bdf = Bdf::new(0, 4, 0, 0);

    #[test]
    fn only_an_attached_device_of_the_same_function_passes() {
        let no = AttachError::NotInContainer { vfio: A };
        assert_eq!(vouch(true, no, A, A), Ok(()));
        assert_eq!(vouch(false, no, A, A), Err(no));
        assert_eq!(vouch(false, no, A, B), Err(no));
        let e = vouch(true, no, A, B).unwrap_err();
        assert_eq!(e, AttachError::OtherFunction { vfio: A, device: B });
        assert_eq!(
            AttachError::NotAttached { vfio: A }.to_string(),
            "0000:03:00.0 is not attached to the domain's IOAS"
        );
    }
}
