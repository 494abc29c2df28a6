//! Soulseek: the server driver.

pub mod client;
pub mod server;

pub use server::{IpLimits, SlskServer, SlskServerConfig};
