//! File lists (in progress).
