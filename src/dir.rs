//! DMA directions as types, and the access rights they grant.
//!
//! The direction of a mapping decides what the device may do to the memory
//! ([`IommuPerm`], the one form of permissions in the crate: the software
//! IOMMU stores it in its entries as is) and which way data may flow.
//! Making it a type parameter of every mapped segment and address turns
//! "the device writes into a buffer mapped to-device" into a compile error.

use bitflags::bitflags;

use crate::sealed::Sealed;

bitflags! {
    /// What a device may do through one mapping.
    ///
    /// ```
    /// use dmaspace::dir::IommuPerm;
    /// assert!((IommuPerm::READ | IommuPerm::WRITE).contains(IommuPerm::WRITE));
    /// ```
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub struct IommuPerm: u8 {
        /// The device may read (DMA to the device).
        const READ = 1;
        /// The device may write (DMA from the device).
        const WRITE = 2;
    }
}

/// A DMA direction: [`ToDevice`], [`FromDevice`] or [`Bidirectional`].
///
/// Sealed: the three kinds are all there is.
pub trait Direction: Sealed + 'static {
    /// What the device may do to memory mapped in this direction.
    const DEVICE_PERM: IommuPerm;
    /// The kernel's name (`DMA_TO_DEVICE`, ...), for messages.
    const NAME: &'static str;
}

/// Directions in which the device reads the memory (`DMA_TO_DEVICE`, `DMA_BIDIRECTIONAL`).
#[diagnostic::on_unimplemented(
    message = "the device may not read memory mapped `{Self}`",
    label = "this mapping is device-write-only",
    note = "map the buffer `ToDevice` or `Bidirectional` if the device must read it"
)]
pub trait DeviceReads: Direction {}

/// Directions in which the device writes the memory (`DMA_FROM_DEVICE`, `DMA_BIDIRECTIONAL`).
#[diagnostic::on_unimplemented(
    message = "the device may not write to memory mapped `{Self}`",
    label = "this mapping is device-read-only",
    note = "map the buffer `FromDevice` or `Bidirectional` if the device must write it"
)]
pub trait DeviceWrites: Direction {}

/// Memory flows from the CPU to the device; the device only reads it.
///
/// ```
/// use dmaspace::dir::{Direction, ToDevice};
/// assert_eq!(ToDevice::NAME, "DMA_TO_DEVICE");
/// ```
#[derive(Debug)]
pub enum ToDevice {}
/// Memory flows from the device to the CPU; the device only writes it.
///
/// ```
/// use dmaspace::dir::{Direction, FromDevice};
/// assert_eq!(FromDevice::NAME, "DMA_FROM_DEVICE");
/// ```
#[derive(Debug)]
pub enum FromDevice {}
/// The device both reads and writes the memory.
///
/// ```
/// use dmaspace::dir::{Bidirectional, Direction, IommuPerm};
/// assert_eq!(Bidirectional::DEVICE_PERM, IommuPerm::READ | IommuPerm::WRITE);
/// ```
#[derive(Debug)]
pub enum Bidirectional {}

impl Sealed for ToDevice {}
impl Sealed for FromDevice {}
impl Sealed for Bidirectional {}

impl Direction for ToDevice {
    const DEVICE_PERM: IommuPerm = IommuPerm::READ;
    const NAME: &'static str = "DMA_TO_DEVICE";
}
impl Direction for FromDevice {
    const DEVICE_PERM: IommuPerm = IommuPerm::WRITE;
    const NAME: &'static str = "DMA_FROM_DEVICE";
}
impl Direction for Bidirectional {
    const DEVICE_PERM: IommuPerm = IommuPerm::READ.union(IommuPerm::WRITE);
    const NAME: &'static str = "DMA_BIDIRECTIONAL";
}

impl DeviceReads for ToDevice {}
impl DeviceReads for Bidirectional {}
impl DeviceWrites for FromDevice {}
impl DeviceWrites for Bidirectional {}
