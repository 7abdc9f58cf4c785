//! Building a [`Mesh`] from its config sources: the gRPC bootstrap (ADS) or a static file.

use std::path::PathBuf;

use super::Mesh;

/// Errors building a [`Mesh`].
#[derive(Debug, thiserror::Error)]
pub enum MeshError {
    /// Neither `GRPC_XDS_BOOTSTRAP`, `GRPC_XDS_BOOTSTRAP_CONFIG` nor `MESH_STATIC_CONFIG` is set.
    #[error(
        "no mesh config: set GRPC_XDS_BOOTSTRAP, GRPC_XDS_BOOTSTRAP_CONFIG or MESH_STATIC_CONFIG"
    )]
    NoConfig,
    /// The bootstrap could not be read or is invalid.
    #[error(transparent)]
    Bootstrap(#[from] crate::bootstrap::BootstrapError),
    /// The xDS client could not start.
    #[error(transparent)]
    Xds(#[from] crate::xds::XdsError),
    /// The static config file could not be loaded.
    #[error("static config `{path}`: {source}")]
    Static {
        /// The file.
        path: PathBuf,
        /// Why.
        source: crate::source::SourceError,
    },
}

impl Mesh {
    /// A mesh fed over ADS by the bootstrap's first xDS server (gRFC A27). Must be called
    /// within a Tokio runtime; nothing is subscribed until a target is asked for.
    pub fn from_bootstrap(bootstrap: &crate::bootstrap::Bootstrap) -> Result<Mesh, MeshError> {
        let cache = crate::cache::ResourceCache::new();
        let client = crate::xds::XdsClient::start(bootstrap, cache.clone())?;
        Ok(Mesh::new(cache, std::sync::Arc::new(client)))
    }

    /// From the environment: `GRPC_XDS_BOOTSTRAP` (a file) or `GRPC_XDS_BOOTSTRAP_CONFIG`
    /// (inline JSON) for ADS, as gRPC does; else `MESH_STATIC_CONFIG` naming an Envoy resource
    /// file (JSON or YAML) for a mesh with no control plane.
    pub fn from_env() -> Result<Mesh, MeshError> {
        if std::env::var_os("GRPC_XDS_BOOTSTRAP").is_some()
            || std::env::var_os("GRPC_XDS_BOOTSTRAP_CONFIG").is_some()
        {
            let bootstrap = crate::bootstrap::Bootstrap::from_env()?;
            return Mesh::from_bootstrap(&bootstrap);
        }
        match std::env::var_os("MESH_STATIC_CONFIG") {
            Some(path) => Mesh::from_static_file(PathBuf::from(path)),
            None => Err(MeshError::NoConfig),
        }
    }

    /// A mesh over an Envoy resource file (protobuf JSON mapping, as JSON or YAML). Resources
    /// that fail validation are logged with their errors and left out; the rest apply.
    pub fn from_static_file(path: impl Into<PathBuf>) -> Result<Mesh, MeshError> {
        let path = path.into();
        let source =
            crate::source::StaticSource::from_file(&path).map_err(|source| MeshError::Static {
                path: path.clone(),
                source,
            })?;
        let (cache, errors) = source.into_parts();
        for e in errors {
            tracing::warn!(file = %path.display(), error = %e, "static resource rejected");
        }
        Ok(Mesh::from_cache(cache))
    }
}
