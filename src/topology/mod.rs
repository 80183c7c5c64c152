//! PCI topology (placeholder until the topology branch lands).
mod bdf;
pub use bdf::{Bdf, HostBridgeId, ParseBdfError};
