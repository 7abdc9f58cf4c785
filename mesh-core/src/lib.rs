//! Core of the proxyless mesh: the validated xDS config model, the ADS client, the bootstrap, the
//! static-file source and the compiled per-target snapshot.
//!
//! No tower and no hyper here: route matching and endpoint picking live in [`snapshot`] so the
//! control plane, the benches and any transport can use them without a network.

pub mod authz;
pub mod bootstrap;
pub mod cache;
pub mod jwt;
pub mod mesh;
pub mod model;
pub mod snapshot;
pub mod source;
pub mod xds;
