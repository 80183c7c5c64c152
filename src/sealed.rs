//! The one seal of the crate: traits whose implementations are all in this
//! crate (directions, sync states, route kinds, request containers) take
//! [`Sealed`] as a supertrait, so no other crate can add a kind.

/// Implemented only inside `dmaspace`. Not nameable from outside (the
/// module is private), so downstream crates cannot implement it.
pub trait Sealed {}
