//! Search matching (in progress).
