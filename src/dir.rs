//! DMA directions as types.
//!
//! The direction of a mapping decides the IOMMU permission the device gets
//! and which way data may flow; making it a type parameter turns "the
//! device wrote into a buffer mapped to-device" into a compile error.

use crate::iommu::IommuPerm;

mod sealed {
    pub trait Sealed {}
}

/// A DMA direction: [`ToDevice`], [`FromDevice`] or [`Bidirectional`].
///
/// Sealed: the three kinds are all there is.
pub trait Direction: sealed::Sealed + 'static {
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
/// use dmaspace::dir::{Bidirectional, Direction};
/// use dmaspace::iommu::IommuPerm;
/// assert_eq!(Bidirectional::DEVICE_PERM, IommuPerm::READ | IommuPerm::WRITE);
/// ```
#[derive(Debug)]
pub enum Bidirectional {}

impl sealed::Sealed for ToDevice {}
impl sealed::Sealed for FromDevice {}
impl sealed::Sealed for Bidirectional {}

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
