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
