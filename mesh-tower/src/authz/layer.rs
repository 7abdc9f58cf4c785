use mesh_core::authz::AuthzChain;
use tower::Layer;

use super::{Authz, AuthzHandle};

/// Runs the inbound RBAC policy before the handler (see the [module docs](super)).
#[derive(Clone, Debug)]
pub struct AuthzLayer {
    handle: AuthzHandle,
}

impl AuthzLayer {
    /// A layer enforcing `chain`, fixed until swapped through [`AuthzLayer::handle`].
    pub fn new(chain: AuthzChain) -> Self {
        AuthzLayer {
            handle: AuthzHandle::new(chain),
        }
    }

    /// A layer enforcing whatever `handle` holds now and later.
    pub fn from_handle(handle: AuthzHandle) -> Self {
        AuthzLayer { handle }
    }

    /// The handle to swap the policy at run time.
    pub fn handle(&self) -> &AuthzHandle {
        &self.handle
    }
}

impl<S> Layer<S> for AuthzLayer {
    type Service = Authz<S>;

    fn layer(&self, inner: S) -> Authz<S> {
        Authz::new(inner, self.handle.clone())
    }
}
