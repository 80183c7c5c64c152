//! A function's BARs: where each one sits for the CPU (sysfs `resource`) and,
//! for a memory BAR, on the bus (its BAR register in config space).
//!
//! The two views differ on machines whose host bridge translates (the bus
//! offset); on x86 they are equal. A provider of P2P memory needs both, so a
//! [`Bar`] carries both, and says "unknown" for the bus side rather than
//! guess it.
//!
//! Both are plain numbers here: a topology is a description, and its values
//! become typed addresses (`dmaspace`'s `PhysAddr`, `BusAddr`) only on a
//! machine that the driver trusts to be the one it runs on.

use core::fmt;

bitflags::bitflags! {
    /// The bits of a resource's `IORESOURCE_*` flags that say what a BAR is
    /// (`include/linux/ioport.h`). Other bits of the kernel's flags word
    /// (`IORESOURCE_SIZEALIGN`, the register's low bits) are not kept.
    ///
    /// ```
    /// use dmaspace_pci::BarFlags;
    /// // An NVMe CMB as sysfs `resource` shows it: 0x14220c.
    /// let f = BarFlags::from_bits_truncate(0x0014_220c);
    /// assert_eq!(f, BarFlags::MEM | BarFlags::PREFETCH | BarFlags::MEM_64);
    /// ```
    #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
    pub struct BarFlags: u64 {
        /// `IORESOURCE_IO`: an I/O-port BAR.
        const IO = 0x0000_0100;
        /// `IORESOURCE_MEM`: a memory BAR.
        const MEM = 0x0000_0200;
        /// `IORESOURCE_PREFETCH`: prefetchable memory.
        const PREFETCH = 0x0000_2000;
        /// `IORESOURCE_MEM_64`: a 64-bit memory BAR (two BAR registers).
        const MEM_64 = 0x0010_0000;
    }
}

/// Standard BARs of a type-0 header (BAR0..BAR5).
pub(crate) const BAR_COUNT: usize = 6;

/// Why a [`Bar`] cannot be made.
///
/// ```
/// use dmaspace_pci::{Bar, BarError, BarFlags};
/// assert_eq!(Bar::new(6, 0, 4096, BarFlags::MEM), Err(BarError::Index(6)));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BarError {
    /// The index is not 0..=5.
    Index(u8),
    /// The size is zero, or the range passes the top of the 64-bit space.
    Range {
        /// First byte.
        start: u64,
        /// Size in bytes.
        size: u64,
    },
    /// The flags name neither memory nor I/O, or both, or prefetch or 64-bit
    /// on an I/O BAR.
    Kind(BarFlags),
    /// A bus start was given for an I/O BAR.
    BusOnIo,
}

impl fmt::Display for BarError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BarError::Index(i) => write!(f, "BAR index {i} is not 0..=5"),
            BarError::Range { start, size } => write!(
                f,
                "BAR at {start:#x} of {size:#x} bytes is empty or passes the top of the address space"
            ),
            BarError::Kind(flags) => write!(
                f,
                "BAR flags {:#x} are not one of memory (optionally 64-bit, prefetchable) or I/O",
                flags.bits()
            ),
            BarError::BusOnIo => f.write_str("an I/O BAR has no bus address for P2P"),
        }
    }
}

impl core::error::Error for BarError {}

/// One BAR of a PCI function: its index, where the CPU sees it, its size and
/// kind, and for a memory BAR where it sits on the bus, when that is known.
///
/// # Invariants
/// `index <= 5`; `size > 0` and `[cpu_start, cpu_start + size)` does not
/// wrap; exactly one of [`BarFlags::MEM`] and [`BarFlags::IO`] is set,
/// [`BarFlags::PREFETCH`] and [`BarFlags::MEM_64`] only with `MEM`; a bus
/// start only on a memory BAR, and its range does not wrap either.
///
/// ```
/// use dmaspace_pci::{Bar, BarFlags};
/// let bus = 0x8_0000_0000;
/// let cmb = Bar::new(2, 0x8_0000_0000, 16 << 20, BarFlags::MEM | BarFlags::PREFETCH | BarFlags::MEM_64)?
///     .with_bus_start(bus)?;
/// assert_eq!((cmb.index(), cmb.size()), (2, 16 << 20));
/// assert!(cmb.is_memory());
/// assert_eq!(cmb.bus_start(), Some(bus));
/// # Ok::<(), dmaspace_pci::BarError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Bar {
    index: u8,
    cpu_start: u64,
    size: u64,
    flags: BarFlags,
    bus_start: Option<u64>,
}

impl Bar {
    /// BAR `index` at `[cpu_start, cpu_start + size)` for the CPU, of kind
    /// `flags`, with no known bus start.
    ///
    /// # Errors
    /// [`BarError::Index`] for an index above 5, [`BarError::Range`] for an
    /// empty or wrapping range, [`BarError::Kind`] for flags that are not
    /// one kind of BAR (see the type's invariants).
    ///
    /// ```
    /// use dmaspace_pci::{Bar, BarError, BarFlags};
    /// let io = Bar::new(4, 0xc000, 0x40, BarFlags::IO)?;
    /// assert!(!io.is_memory());
    /// assert!(matches!(Bar::new(0, 0, 0, BarFlags::MEM), Err(BarError::Range { .. })));
    /// assert!(matches!(Bar::new(0, 0, 16, BarFlags::IO | BarFlags::MEM_64), Err(BarError::Kind(_))));
    /// # Ok::<(), BarError>(())
    /// ```
    pub const fn new(
        index: u8,
        cpu_start: u64,
        size: u64,
        flags: BarFlags,
    ) -> Result<Self, BarError> {
        if index as usize >= BAR_COUNT {
            return Err(BarError::Index(index));
        }
        if size == 0 || cpu_start.checked_add(size - 1).is_none() {
            return Err(BarError::Range {
                start: cpu_start,
                size,
            });
        }
        let mem = flags.contains(BarFlags::MEM);
        let io = flags.contains(BarFlags::IO);
        let mem_only = flags.intersects(BarFlags::PREFETCH.union(BarFlags::MEM_64));
        if mem == io || (io && mem_only) {
            return Err(BarError::Kind(flags));
        }
        // INVARIANT: index, range and kind are checked above; no bus start yet.
        Ok(Self {
            index,
            cpu_start,
            size,
            flags,
            bus_start: None,
        })
    }

    /// The same BAR, starting at `bus_start` on the bus.
    ///
    /// # Errors
    /// [`BarError::BusOnIo`] for an I/O BAR, [`BarError::Range`] if the bus
    /// range would pass the top of the address space.
    ///
    /// See the type-level example.
    pub const fn with_bus_start(mut self, bus_start: u64) -> Result<Self, BarError> {
        if !self.is_memory() {
            return Err(BarError::BusOnIo);
        }
        if bus_start.checked_add(self.size - 1).is_none() {
            return Err(BarError::Range {
                start: bus_start,
                size: self.size,
            });
        }
        // INVARIANT: a memory BAR, and the bus range does not wrap (both checked above).
        self.bus_start = Some(bus_start);
        Ok(self)
    }

    /// The BAR index, 0..=5.
    ///
    /// See the type-level example.
    #[must_use]
    pub const fn index(&self) -> u8 {
        self.index
    }

    /// The first byte as the CPU sees it (sysfs `resource`).
    ///
    /// ```
    /// # use dmaspace_pci::{Bar, BarFlags};
    /// let b = Bar::new(0, 0xfe60_0000, 0x4000, BarFlags::MEM)?;
    /// assert_eq!(b.cpu_start(), 0xfe60_0000);
    /// # Ok::<(), dmaspace_pci::BarError>(())
    /// ```
    #[must_use]
    pub const fn cpu_start(&self) -> u64 {
        self.cpu_start
    }

    /// Size in bytes.
    ///
    /// See the type-level example.
    #[must_use]
    pub const fn size(&self) -> u64 {
        self.size
    }

    /// What kind of BAR it is.
    ///
    /// ```
    /// # use dmaspace_pci::{Bar, BarFlags};
    /// let b = Bar::new(0, 0xfe60_0000, 0x4000, BarFlags::MEM | BarFlags::MEM_64)?;
    /// assert!(b.flags().contains(BarFlags::MEM_64));
    /// # Ok::<(), dmaspace_pci::BarError>(())
    /// ```
    #[must_use]
    pub const fn flags(&self) -> BarFlags {
        self.flags
    }

    /// Whether it is a memory BAR (the only kind that can hold P2P memory).
    ///
    /// See [`Bar::new`].
    #[must_use]
    pub const fn is_memory(&self) -> bool {
        self.flags.contains(BarFlags::MEM)
    }

    /// The first byte on the bus, if known: read from the BAR register when
    /// loaded from sysfs; `None` for an I/O BAR, or when the register could
    /// not be read or does not describe this BAR (see `sysfs::load`).
    ///
    /// See the type-level example.
    #[must_use]
    pub const fn bus_start(&self) -> Option<u64> {
        self.bus_start
    }
}

/// A function's BARs, by index: slot `i` holds BAR `i` or nothing.
///
/// ```
/// use dmaspace_pci::{Bar, BarFlags, Bars};
/// let bars = Bars::NONE.with(Bar::new(2, 0xf700_0000, 16 << 20, BarFlags::MEM)?);
/// assert_eq!(bars.get(2).map(|b| b.size()), Some(16 << 20));
/// assert!(bars.get(0).is_none());
/// assert_eq!(bars.iter().count(), 1);
/// # Ok::<(), dmaspace_pci::BarError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Bars([Option<Bar>; BAR_COUNT]);

impl Bars {
    /// No BARs (what a function without a sysfs `resource` file has).
    pub const NONE: Bars = Bars([None; BAR_COUNT]);

    /// BAR `index`, if the function has it.
    ///
    /// See the type-level example.
    #[must_use]
    pub const fn get(&self, index: u8) -> Option<&Bar> {
        if index as usize >= BAR_COUNT {
            return None;
        }
        self.0[index as usize].as_ref()
    }

    /// The BARs the function has, by index.
    ///
    /// See the type-level example.
    pub fn iter(&self) -> impl Iterator<Item = &Bar> {
        self.0.iter().flatten()
    }

    /// The same set with `bar` in its slot (replacing what was there).
    ///
    /// See the type-level example.
    #[must_use]
    pub const fn with(mut self, bar: Bar) -> Self {
        // `Bar`'s invariant keeps the index below BAR_COUNT.
        self.0[bar.index as usize] = Some(bar);
        self
    }
}
