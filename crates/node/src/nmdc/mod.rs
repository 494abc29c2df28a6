//! Direct Connect (NMDC): the hub driver.

pub mod hub;
pub mod share;

pub use hub::{HubServer, HubServerConfig};
