//! Soulseek: the server driver.

pub mod server;

pub use server::{SlskServer, SlskServerConfig};
