//! Direct Connect (NMDC): the hub driver.

pub mod cc;
pub mod client;
pub(crate) mod driver;
pub mod hub;
pub mod ranged;
pub mod share;

pub use hub::{HubServer, HubServerConfig};
