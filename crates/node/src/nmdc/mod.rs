//! Direct Connect (NMDC): the hub driver.

pub mod hub;

pub use hub::{HubServer, HubServerConfig};
