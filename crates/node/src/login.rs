//! A hub or server that refused to log us in, by kind, so that the node can name the
//! setting to change (a taken nick and a wrong password are the user's to fix; the
//! session keeps retrying meanwhile).

/// What a refusal was about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The nick or user name is taken, reserved, or not allowed.
    Name,
    /// The password is wrong.
    Password,
    /// The name is registered and we gave no password.
    Registered,
    /// Anything else (the hub is full, banned, …).
    Other,
}

/// A login refused by the hub or server.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{why}")]
pub struct LoginRefused {
    /// What it was about.
    pub kind: Refused,
    /// What the hub or server said, in words.
    pub why: String,
}

impl LoginRefused {
    /// The refusal in `e`'s chain, if it is one.
    pub fn of(e: &anyhow::Error) -> Option<&LoginRefused> {
        e.chain().find_map(|c| c.downcast_ref::<LoginRefused>())
    }
}
