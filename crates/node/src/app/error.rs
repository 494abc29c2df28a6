//! The node's one error type for requests made of it (by the API, the CLI or a test):
//! its kind says what the caller did wrong or what is missing, and `crate::api` turns
//! each kind into an HTTP status in one place (`impl From<anyhow::Error> for ApiError`).
//! Node methods return `anyhow::Result`; a `NodeError` anywhere in the chain decides the
//! kind, and an error without one is a request the node could not carry out (400).

/// What went wrong, by kind.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// No such thing (transfer, search, result, session, chat): 404.
    #[error("{0}")]
    NotFound(String),
    /// The thing is not in a state that allows it, or would clash with one that is
    /// there (a second session to the same hub): 409.
    #[error("{0}")]
    Conflict(String),
    /// The request itself is wrong (an unknown setting, a value out of range, an empty
    /// query, a bad address): 400.
    #[error("{0}")]
    Invalid(String),
    /// A network the request needs is not connected: 503.
    #[error("not connected to {0}")]
    NotConnected(String),
    /// A peer the request needs is offline or refused (a browse of a user who is not
    /// there): 503.
    #[error("{0}")]
    Unavailable(String),
    /// A peer the request needs did not answer in time: 504.
    #[error("{0}")]
    Timeout(String),
}

impl NodeError {
    /// The kind of `e`: the first `NodeError` in its chain.
    pub fn of(e: &anyhow::Error) -> Option<&NodeError> {
        e.chain().find_map(|c| c.downcast_ref::<NodeError>())
    }
}
