//! Errors of the static source: reading and decoding files (validation errors are
//! [`ModelError`](crate::model::ModelError)s, reported per resource).

use std::path::PathBuf;

/// Reading or decoding a file of Envoy resources failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SourceError {
    /// The file could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file name does not say JSON or YAML.
    #[error("{}: unknown format (expected .json, .yaml or .yml)", path.display())]
    UnknownFormat {
        /// The file.
        path: PathBuf,
    },
    /// A decoding error inside a file.
    #[error("{}: {source}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong in it.
        #[source]
        source: Box<SourceError>,
    },
    /// The text is not valid JSON / YAML.
    #[error("not valid {format}: {message}")]
    Syntax {
        /// `json` or `yaml`.
        format: &'static str,
        /// The parser's message.
        message: String,
    },
    /// An object that should be a resource has no `@type` and no default type was given.
    #[error("resource #{index} at {json_path}: no `@type` and no default resource type")]
    NoType {
        /// Position among the resources found.
        index: usize,
        /// Where it is, e.g. `$[3]`.
        json_path: String,
    },
    /// A resource does not match its proto schema.
    #[error("{resource_type} #{index} `{name}` at {json_path}: {message}")]
    Decode {
        /// `listener`, `route`, `cluster` or `endpoints`.
        resource_type: crate::model::ResourceType,
        /// Position among the resources found.
        index: usize,
        /// The resource's name, if it could be read.
        name: String,
        /// The JSON path of the offending value, e.g.
        /// `$.configs[1].dynamic_active_clusters[0].cluster.connect_timeout`.
        json_path: String,
        /// The decoder's message.
        message: String,
    },
    /// An `Any` given in-process is not one of the four resource types, or does not decode.
    #[error("any `{type_url}`: {message}")]
    Any {
        /// Its type URL.
        type_url: String,
        /// What is wrong.
        message: String,
    },
    /// The embedded descriptor set did not load (a build problem, not an input problem).
    #[error("embedded envoy descriptors: {0}")]
    Descriptors(String),
}
