use std::{fmt, time::Duration};

use super::Which;

/// A deadline elapsed; the detail of a `timeout` / `per_try_timeout` [`crate::MeshError`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Elapsed {
    /// Which deadline.
    pub which: Which,
    /// Its length.
    pub after: Duration,
}

impl fmt::Display for Elapsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.which {
            Which::Route => write!(f, "route timeout of {:?} elapsed", self.after),
            Which::PerTry => write!(f, "per-try timeout of {:?} elapsed", self.after),
            Which::StreamDuration | Which::Off => {
                write!(f, "max stream duration of {:?} elapsed", self.after)
            }
            Which::Idle => write!(f, "idle timeout of {:?} elapsed", self.after),
            Which::CallerDeadline => {
                write!(f, "the call's own deadline of {:?} elapsed", self.after)
            }
        }
    }
}

impl std::error::Error for Elapsed {}
