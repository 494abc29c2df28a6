//! Direct Connect over ADC (docs/protocols/adc.md): the hub driver, the client session and
//! its client-to-client connections.

pub mod cc;
pub mod client;
pub mod hub;
pub mod ranged;

pub use hub::{AdcHubServer, AdcHubServerConfig};
