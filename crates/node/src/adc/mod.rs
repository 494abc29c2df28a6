//! Direct Connect over ADC (docs/protocols/adc.md): the client session and its
//! client-to-client connections.

pub mod cc;
pub mod client;
