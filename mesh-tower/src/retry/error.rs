use std::fmt;

/// Why a retry the policy allowed was not made (the `not_retried` reason of a
/// [`crate::MeshError`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum NotRetried {
    /// The request body was larger than the replay cap, so it could not be sent again.
    BodyOverReplayCap,
}

impl NotRetried {
    /// The snake_case reason, e.g. `body_over_replay_cap`.
    pub fn as_str(self) -> &'static str {
        match self {
            NotRetried::BodyOverReplayCap => "body_over_replay_cap",
        }
    }
}

impl fmt::Display for NotRetried {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
