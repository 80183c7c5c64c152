//! VFIO's no-IOMMU mode (feature `vfio`, Linux): a direct mapper for a
//! function the kernel says no IOMMU translates.
//!
//! [`Mapper::direct`] is `unsafe` because the crate cannot know that a
//! device's DMA is untranslated. Under VFIO it can: the kernel sets a
//! container's IOMMU model to `VFIO_NOIOMMU_IOMMU` only when its groups are
//! no-IOMMU groups, which it creates only for devices without an IOMMU
//! (`vfio.enable_unsafe_noiommu_mode=1`; the kernel taints itself), and it
//! hands out a device fd only from a group attached to a container with a
//! model set. [`no_iommu_mapper`] checks exactly that chain.
//!
//! What stays `unsafe` in this mode is the memory: a direct mapper needs
//! physical addresses, which userspace learns from pagemap and the kernel
//! does not promise to keep
//! ([`PinnedMemory::host_pages_phys`](crate::PinnedMemory::host_pages_phys)).

use core::fmt;

use crate::{VfioContainer, VfioDevice, VfioIommuType};
use dmaspace::Brand;
use dmaspace::device::Device;
use dmaspace::error::ClaimError;
use dmaspace::map::{Direct, Mapper};
use dmaspace::pci::Bdf;

/// Why [`no_iommu_mapper`] refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum NoIommuError {
    /// The container's IOMMU model is not `VFIO_NOIOMMU_IOMMU` (type1, or
    /// none set): the device's DMA is translated, or nothing is known.
    NotNoIommu {
        /// The model set, if any.
        model: Option<VfioIommuType>,
    },
    /// The VFIO device was not opened from a group attached to this
    /// container (a cdev, or another container).
    NotInContainer {
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

impl fmt::Display for NoIommuError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotNoIommu { model: Some(m) } => write!(
                f,
                "the container's IOMMU model is {m:?}, not VFIO_NOIOMMU_IOMMU: the device's DMA is translated"
            ),
            Self::NotNoIommu { model: None } => f.write_str(
                "the container has no IOMMU model set: nothing says the device's DMA is untranslated",
            ),
            Self::NotInContainer { vfio } => write!(
                f,
                "{vfio} was not opened from a group attached to this container"
            ),
            Self::OtherFunction { vfio, device } => write!(
                f,
                "the VFIO device is {vfio}, the Device is {device}: not the same function"
            ),
            Self::Claim(e) => write!(f, "{e}"),
        }
    }
}

impl core::error::Error for NoIommuError {}

/// The checks of [`no_iommu_mapper`], apart from the claim.
fn vouch(
    model: Option<VfioIommuType>,
    container: u64,
    vfio_container: Option<u64>,
    vfio: Bdf,
    device: Bdf,
) -> Result<(), NoIommuError> {
    if model != Some(VfioIommuType::NoIommu) {
        return Err(NoIommuError::NotNoIommu { model });
    }
    if vfio_container != Some(container) {
        return Err(NoIommuError::NotInContainer { vfio });
    }
    if vfio != device {
        return Err(NoIommuError::OtherFunction { vfio, device });
    }
    Ok(())
}

/// A direct mapper for `device`, which VFIO drives as `vfio` in no-IOMMU
/// mode: `container`'s model is `VFIO_NOIOMMU_IOMMU` and `vfio` was
/// opened from a group attached to it, so (the kernel says) nothing
/// translates the function's DMA, which is [`Mapper::direct`]'s contract.
///
/// # Errors
/// [`NoIommuError::NotNoIommu`], [`NotInContainer`](NoIommuError::NotInContainer),
/// [`OtherFunction`](NoIommuError::OtherFunction) when the chain above
/// does not hold; [`Claim`](NoIommuError::Claim) as [`Mapper::direct`].
///
/// See `tools/vm/nvme-driver` (`p2p-bus-addr`).
pub fn no_iommu_mapper<'d, K: Brand>(
    container: &VfioContainer,
    vfio: &VfioDevice,
    device: &'d Device<'_, K>,
) -> Result<Mapper<'d, K, Direct>, NoIommuError> {
    vouch(
        container.iommu(),
        container.id(),
        vfio.container_id(),
        vfio.address(),
        device.bdf(),
    )?;
    // SAFETY: the kernel set the container's model to VFIO_NOIOMMU_IOMMU,
    // which it allows only for no-IOMMU groups, and gave the VFIO device
    // of `device`'s function from a group attached to that container:
    // no IOMMU translates the function's DMA.
    unsafe { Mapper::direct(device) }.map_err(NoIommuError::Claim)
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Bdf = Bdf::new(0, 3, 0, 0);
    const B: Bdf = Bdf::new(0, 4, 0, 0);

    #[test]
    fn only_a_no_iommu_container_its_own_device_and_the_same_function_pass() {
        let no = Some(VfioIommuType::NoIommu);
        assert_eq!(vouch(no, 7, Some(7), A, A), Ok(()));
        assert_eq!(
            vouch(Some(VfioIommuType::Type1v2), 7, Some(7), A, A),
            Err(NoIommuError::NotNoIommu {
                model: Some(VfioIommuType::Type1v2)
            })
        );
        assert_eq!(
            vouch(None, 7, Some(7), A, A),
            Err(NoIommuError::NotNoIommu { model: None })
        );
        assert_eq!(
            NoIommuError::NotNoIommu {
                model: Some(VfioIommuType::Type1v2)
            }
            .to_string(),
            "the container's IOMMU model is Type1v2, not VFIO_NOIOMMU_IOMMU: the device's DMA is translated"
        );
        assert_eq!(
            vouch(no, 7, Some(8), A, A),
            Err(NoIommuError::NotInContainer { vfio: A })
        );
        assert_eq!(
            vouch(no, 7, None, A, A),
            Err(NoIommuError::NotInContainer { vfio: A })
        );
        let e = vouch(no, 7, Some(7), A, B).unwrap_err();
        assert_eq!(e, NoIommuError::OtherFunction { vfio: A, device: B });
        assert_eq!(
            e.to_string(),
            "the VFIO device is 0000:03:00.0, the Device is 0000:04:00.0: not the same function"
        );
    }
}
