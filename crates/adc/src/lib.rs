//! Sans-IO ADC (the Direct Connect protocol after NMDC): see docs/protocols/adc.md.
//!
//! No sockets, clock or runtime here: the node's drivers (`crates/node/src/adc/`) feed bytes
//! and time in and write what comes out. TTH, Tiger trees and file lists are shared with
//! NMDC (`omnipeer-nmdc`).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod client;
pub mod hub;
pub mod message;
pub mod transfer;
