//! A transport wrapper that negotiates `VIRTIO_F_ACCESS_PLATFORM` and checks
//! that the device accepted the features.

use alloc::sync::Arc;
use core::fmt;
use core::sync::atomic::{AtomicU8, Ordering};

use virtio_drivers::device::common::Feature;
use virtio_drivers::transport::{DeviceStatus, DeviceType, InterruptStatus, Transport};
use virtio_drivers::{Error, PhysAddr};
use zerocopy::{FromBytes, Immutable, IntoBytes};

/// `VIRTIO_F_ACCESS_PLATFORM` (bit 33): the device's DMA goes through the
/// platform's translation (an IOMMU), so the addresses the driver gives it
/// are device addresses (IOVAs), not physical ones.
pub const ACCESS_PLATFORM: u64 = Feature::ACCESS_PLATFORM.bits();

const PENDING: u8 = 0;
const WITH_ACCESS_PLATFORM: u8 = 1;
const WITHOUT_ACCESS_PLATFORM: u8 = 2;
const NOT_OFFERED: u8 = 3;
const REFUSED: u8 = 4;

/// Why a device was not set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum NegotiationError {
    /// The device does not offer `VIRTIO_F_ACCESS_PLATFORM`, and the
    /// transport was made with [`PlatformTransport::requiring`]: such a
    /// device bypasses the IOMMU and would read the IOVAs the Hal hands
    /// out as physical addresses.
    NotOffered,
    /// The device cleared `FEATURES_OK` after the driver set it: it does
    /// not accept the features the driver chose (QEMU does this to a device
    /// with `iommu_platform=on` that is not offered `ACCESS_PLATFORM`).
    FeaturesRefused {
        /// The features the driver wrote.
        driver_features: u64,
    },
}

impl fmt::Display for NegotiationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotOffered => f.write_str(
                "the device does not offer VIRTIO_F_ACCESS_PLATFORM: it would bypass the IOMMU",
            ),
            Self::FeaturesRefused { driver_features } => write!(
                f,
                "the device refused FEATURES_OK for driver features {driver_features:#x}"
            ),
        }
    }
}

impl core::error::Error for NegotiationError {}

/// The outcome of a [`PlatformTransport`]'s feature negotiation, readable
/// after the transport was moved into a driver.
///
/// See [`PlatformTransport`].
#[derive(Clone)]
pub struct Negotiation {
    state: Arc<AtomicU8>,
    features: Arc<core::sync::atomic::AtomicU64>,
}

impl Negotiation {
    /// `None` before the driver set `FEATURES_OK`; then whether
    /// `ACCESS_PLATFORM` was negotiated, or why the device was not set up.
    ///
    /// # Errors
    /// The [`NegotiationError`] that stopped the setup.
    ///
    /// See [`PlatformTransport`].
    pub fn result(&self) -> Option<Result<bool, NegotiationError>> {
        match self.state.load(Ordering::Acquire) {
            WITH_ACCESS_PLATFORM => Some(Ok(true)),
            WITHOUT_ACCESS_PLATFORM => Some(Ok(false)),
            NOT_OFFERED => Some(Err(NegotiationError::NotOffered)),
            REFUSED => Some(Err(NegotiationError::FeaturesRefused {
                driver_features: self.features.load(Ordering::Acquire),
            })),
            _ => None,
        }
    }

    fn set(&self, state: u8) {
        self.state.store(state, Ordering::Release);
    }

    fn failed(&self) -> bool {
        matches!(self.state.load(Ordering::Acquire), NOT_OFFERED | REFUSED)
    }
}

impl fmt::Debug for Negotiation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Negotiation({:?})", self.result())
    }
}

/// Any virtio-drivers [`Transport`], with `VIRTIO_F_ACCESS_PLATFORM`
/// negotiated when the device offers it, and `FEATURES_OK` read back after
/// the driver sets it (virtio-drivers never reads it back).
///
/// If the device refuses (or, with [`requiring`](Self::requiring), does
/// not offer the feature), the wrapper sets `FAILED`, never sets
/// `DRIVER_OK`, and every later config-space access fails with
/// [`Error::Unsupported`], so the driver's constructor (`VirtIOBlk::new`
/// and the others, which read their config space next) returns an error
/// instead of driving a device that is not set up.
/// [`Negotiation::result`] says why.
///
/// See the crate's example.
pub struct PlatformTransport<T: Transport> {
    inner: T,
    offered: u64,
    written: u64,
    require: bool,
    outcome: Negotiation,
}

impl<T: Transport> PlatformTransport<T> {
    /// Wraps `inner`; `ACCESS_PLATFORM` is negotiated if offered.
    ///
    /// See the crate's example.
    pub fn new(inner: T) -> Self {
        Self {
            inner,
            offered: 0,
            written: 0,
            require: false,
            outcome: Negotiation {
                state: Arc::new(AtomicU8::new(PENDING)),
                features: Arc::new(core::sync::atomic::AtomicU64::new(0)),
            },
        }
    }

    /// Wraps `inner`, and fails the setup if the device does not offer
    /// `ACCESS_PLATFORM` (behind an IOMMU, such a device would bypass it).
    ///
    /// See [`NegotiationError::NotOffered`].
    pub fn requiring(inner: T) -> Self {
        Self {
            require: true,
            ..Self::new(inner)
        }
    }

    /// A handle on the negotiation's outcome.
    ///
    /// See the crate's example.
    pub fn negotiation(&self) -> Negotiation {
        self.outcome.clone()
    }

    /// The wrapped transport.
    ///
    /// See the crate's example.
    pub fn inner(&self) -> &T {
        &self.inner
    }
}

impl<T: Transport + fmt::Debug> fmt::Debug for PlatformTransport<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PlatformTransport")
            .field("inner", &self.inner)
            .field("outcome", &self.outcome)
            .finish()
    }
}

impl<T: Transport> Transport for PlatformTransport<T> {
    fn device_type(&self) -> DeviceType {
        self.inner.device_type()
    }

    fn read_device_features(&mut self) -> u64 {
        self.offered = self.inner.read_device_features();
        self.offered
    }

    fn write_driver_features(&mut self, driver_features: u64) {
        let f = if self.offered & ACCESS_PLATFORM != 0 {
            driver_features | ACCESS_PLATFORM
        } else {
            driver_features
        };
        self.written = f;
        self.outcome.features.store(f, Ordering::Release);
        self.inner.write_driver_features(f);
    }

    fn max_queue_size(&mut self, queue: u16) -> u32 {
        if self.outcome.failed() {
            return 0;
        }
        self.inner.max_queue_size(queue)
    }

    fn notify(&mut self, queue: u16) {
        if !self.outcome.failed() {
            self.inner.notify(queue);
        }
    }

    fn get_status(&self) -> DeviceStatus {
        self.inner.get_status()
    }

    fn set_status(&mut self, status: DeviceStatus) {
        if status.is_empty() {
            // A reset: a new negotiation.
            self.outcome.set(PENDING);
            self.inner.set_status(status);
            return;
        }
        if self.outcome.failed() {
            // Never DRIVER_OK on a device that is not set up.
            self.inner
                .set_status(status.difference(DeviceStatus::DRIVER_OK) | DeviceStatus::FAILED);
            return;
        }
        let first_features_ok = status.contains(DeviceStatus::FEATURES_OK)
            && !self.inner.get_status().contains(DeviceStatus::FEATURES_OK);
        if !first_features_ok {
            self.inner.set_status(status);
            return;
        }
        let offered = self.offered & ACCESS_PLATFORM != 0;
        if self.require && !offered {
            self.outcome.set(NOT_OFFERED);
            self.inner.set_status(DeviceStatus::FAILED);
            log::error!("virtio device: {}", NegotiationError::NotOffered);
            return;
        }
        self.inner.set_status(status);
        if self.inner.get_status().contains(DeviceStatus::FEATURES_OK) {
            self.outcome.set(if self.written & ACCESS_PLATFORM != 0 {
                WITH_ACCESS_PLATFORM
            } else {
                WITHOUT_ACCESS_PLATFORM
            });
        } else {
            self.outcome.set(REFUSED);
            self.inner.set_status(status | DeviceStatus::FAILED);
            log::error!(
                "virtio device: {}",
                NegotiationError::FeaturesRefused {
                    driver_features: self.written
                }
            );
        }
    }

    fn set_guest_page_size(&mut self, guest_page_size: u32) {
        self.inner.set_guest_page_size(guest_page_size);
    }

    fn requires_legacy_layout(&self) -> bool {
        self.inner.requires_legacy_layout()
    }

    fn queue_set(
        &mut self,
        queue: u16,
        size: u32,
        descriptors: PhysAddr,
        driver_area: PhysAddr,
        device_area: PhysAddr,
    ) {
        if !self.outcome.failed() {
            self.inner
                .queue_set(queue, size, descriptors, driver_area, device_area);
        }
    }

    fn queue_unset(&mut self, queue: u16) {
        self.inner.queue_unset(queue);
    }

    fn queue_used(&mut self, queue: u16) -> bool {
        self.inner.queue_used(queue)
    }

    fn ack_interrupt(&mut self) -> InterruptStatus {
        self.inner.ack_interrupt()
    }

    fn read_config_generation(&self) -> u32 {
        self.inner.read_config_generation()
    }

    fn read_config_space<V: FromBytes + IntoBytes>(&self, offset: usize) -> Result<V, Error> {
        if self.outcome.failed() {
            return Err(Error::Unsupported);
        }
        self.inner.read_config_space(offset)
    }

    fn write_config_space<V: IntoBytes + Immutable>(
        &mut self,
        offset: usize,
        value: V,
    ) -> Result<(), Error> {
        if self.outcome.failed() {
            return Err(Error::Unsupported);
        }
        self.inner.write_config_space(offset, value)
    }
}
