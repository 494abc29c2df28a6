//! The omnipeer runtime: tokio drivers that pump the sans-IO protocol machines over real
//! sockets and timers, the share index, configuration and transfer plumbing.
// Denied, not forbidden: glibc's allocator calls in `store` are allowed
// (`release_free_heap`, `take_thread_cache`, ...: they hand freed heap pages back after a
// mass leave).
#![deny(unsafe_code)]

pub mod adc;
pub mod api;
pub mod app;
pub mod config;
pub mod dcc;
pub mod events;
pub mod login;
pub mod ministream;
pub mod nmdc;
pub mod progress;
pub mod ratelimit;
pub mod segments;
pub mod serve;
pub mod share;
pub mod slsk;
pub mod store;
pub mod tls;
pub mod tox;
pub mod transfer;
pub mod upload;

pub use config::Config;
