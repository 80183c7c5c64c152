//! A policy is a trust decision: a machine read from sysfs classifies with
//! one of the kernels' own allowlists. A hand-made list that names this
//! host bridge would turn a pair the running kernel refuses into a
//! host-bridge route (what `Route::assume_host_bridge` guards): it takes
//! `unsafe` (`Machine::with_custom_policy`).
use dmaspace::machine::Machine;
use dmaspace::pci::{AllowFlags, Allowlist, AllowlistEntry, DeviceMatch, Policy};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let everything = Allowlist::new(vec![AllowlistEntry::new(0x8086, DeviceMatch::Any, AllowFlags::empty())]);
    let machine = Machine::from_sysfs()?.with_policy(Policy::new(everything));
    let _ = machine;
    Ok(())
}
