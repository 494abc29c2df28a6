//! Direct Connect (ADC): the hub driver (docs/protocols/adc.md).

pub mod hub;

pub use hub::{AdcHubServer, AdcHubServerConfig};
