use mesh_core::authz::AuthzChain;
use tower::Layer;

use super::{Authz, AuthzHandle, JwtClock};

/// Runs the inbound RBAC policy before the handler (see the [module docs](super)).
#[derive(Clone, Debug)]
pub struct AuthzLayer {
    handle: AuthzHandle,
    clock: JwtClock,
}

impl AuthzLayer {
    /// A layer enforcing `chain`, fixed until swapped through [`AuthzLayer::handle`].
    pub fn new(chain: AuthzChain) -> Self {
        AuthzLayer::from_handle(AuthzHandle::new(chain))
    }

    /// A layer enforcing whatever `handle` holds now and later.
    pub fn from_handle(handle: AuthzHandle) -> Self {
        AuthzLayer {
            handle,
            clock: JwtClock::system(),
        }
    }

    /// The same layer checking JWT `exp` / `nbf` against `clock` (tests: [`JwtClock::manual`]).
    pub fn with_clock(mut self, clock: JwtClock) -> Self {
        self.clock = clock;
        self
    }

    /// The handle to swap the policy at run time.
    pub fn handle(&self) -> &AuthzHandle {
        &self.handle
    }
}

impl<S> Layer<S> for AuthzLayer {
    type Service = Authz<S>;

    fn layer(&self, inner: S) -> Authz<S> {
        Authz::new(inner, self.handle.clone()).with_clock(self.clock.clone())
    }
}
