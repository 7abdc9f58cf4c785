//! Istio YAML source: a directory of multi-document YAML files, read into a [`MeshConfig`].
//!
//! Supported kinds (`networking.istio.io/{v1,v1beta1,v1alpha3}`): VirtualService,
//! DestinationRule, ServiceEntry, WorkloadEntry — the fields listed on [`model`]'s types — and
//! `AuthorizationPolicy`, `RequestAuthentication` and `PeerAuthentication`
//! (`security.istio.io/{v1,v1beta1}`, see [`model::AuthorizationPolicy`],
//! [`model::RequestAuthentication`], [`model::PeerAuthentication`]).
//!
//! Error policy:
//! - A field this control plane does not implement (e.g. VirtualService `mirror`, `corsPolicy`,
//!   DestinationRule `connectionPool.http.idleTimeout`) is a [`Warning`] naming file, resource and field path; the
//!   resource still loads without it.
//! - Malformed YAML, or an invalid resource (missing hosts, negative weight, bad regex, a subset no
//!   DestinationRule defines, …) is a [`ConfigError`] naming file, line and field, and **the whole
//!   load is rejected**: the caller (the [`watch`] loop, the
//!   [`ControlPlane`](crate::ControlPlane)) keeps serving the previous good configuration and
//!   shows the error on `/debug/config`. Rejecting the whole reload (rather than dropping the bad
//!   resource) keeps what is served equal to a configuration someone actually wrote.
//!
//! Documents of other kinds (Kubernetes Services, …) are skipped with a
//! warning.

mod authz;
mod duration;
mod fault;
mod load_balancer;
mod locality;
pub mod model;
mod outlier;
mod parse;
mod peer_authn;
mod request_authn;
mod retry;
mod rewrite;
mod tls;
mod validate;
pub mod watch;
mod yaml;

use std::fmt;
use std::path::{Path, PathBuf};

pub use model::MeshConfig;

/// A field or document this control plane ignores; the load still succeeds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// File (or in-memory source name).
    pub file: String,
    /// 1-based line of the document the warning is about.
    pub line: usize,
    /// `Kind/namespace/name`, or empty when the document has no identity yet.
    pub resource: String,
    /// Field path inside the document, e.g. `spec.http[0].retries`.
    pub field: String,
    /// What happened.
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: ", self.file, self.line)?;
        if !self.resource.is_empty() {
            write!(f, "{}: ", self.resource)?;
        }
        write!(f, "field `{}`: {}", self.field, self.message)
    }
}

/// Why a configuration load was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A file or directory could not be read.
    #[error("{path}: {message}")]
    Io {
        /// The path that failed.
        path: PathBuf,
        /// The I/O error text.
        message: String,
    },
    /// A document is not valid YAML.
    #[error("{file}:{line}:{column}: invalid yaml: {message}")]
    Yaml {
        /// File (or in-memory source name).
        file: String,
        /// 1-based line of the syntax error.
        line: usize,
        /// 1-based column of the syntax error.
        column: usize,
        /// Parser message.
        message: String,
    },
    /// A resource is structurally valid YAML but not a valid resource.
    #[error("{file}:{line}: {resource}: field `{field}`: {message}")]
    Invalid {
        /// File (or in-memory source name).
        file: String,
        /// 1-based line where the resource's document starts.
        line: usize,
        /// `Kind/namespace/name` (may be partial when the identity itself is invalid).
        resource: String,
        /// Field path, e.g. `spec.http[0].route[1].weight`.
        field: String,
        /// What is wrong.
        message: String,
    },
}

impl ConfigError {
    /// The file the error is about.
    pub fn file(&self) -> String {
        match self {
            ConfigError::Io { path, .. } => path.display().to_string(),
            ConfigError::Yaml { file, .. } | ConfigError::Invalid { file, .. } => file.clone(),
        }
    }

    /// The 1-based line the error is about, when known.
    pub fn line(&self) -> Option<usize> {
        match self {
            ConfigError::Io { .. } => None,
            ConfigError::Yaml { line, .. } | ConfigError::Invalid { line, .. } => Some(*line),
        }
    }

    /// The field path, for invalid resources.
    pub fn field(&self) -> Option<&str> {
        match self {
            ConfigError::Invalid { field, .. } => Some(field),
            _ => None,
        }
    }
}

/// Parses one multi-document YAML text named `name` (used in warnings and errors) and validates
/// it as a complete configuration.
pub fn load_str(name: &str, yaml: &str) -> Result<(MeshConfig, Vec<Warning>), ConfigError> {
    let mut warnings = Vec::new();
    let config = parse::parse_file(name, yaml, &mut warnings)?;
    validate::validate(&config)?;
    Ok((config, warnings))
}

/// Parses several named YAML texts (in the given order) as one configuration.
pub fn load_sources<'a>(
    sources: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<(MeshConfig, Vec<Warning>), ConfigError> {
    let mut warnings = Vec::new();
    let mut config = MeshConfig::default();
    for (name, yaml) in sources {
        config.extend(parse::parse_file(name, yaml, &mut warnings)?);
    }
    validate::validate(&config)?;
    Ok((config, warnings))
}

/// Reads every `*.yaml` / `*.yml` file of `dir` (not recursive, sorted by file name) as one
/// configuration.
pub fn load_dir(dir: impl AsRef<Path>) -> Result<(MeshConfig, Vec<Warning>), ConfigError> {
    let files = read_dir_files(dir.as_ref())?;
    load_sources(files.iter().map(|(n, t)| (n.as_str(), t.as_str())))
}

/// The YAML files of `dir` as `(path, contents)`, sorted by path.
pub(crate) fn read_dir_files(dir: &Path) -> Result<Vec<(String, String)>, ConfigError> {
    let io = |path: &Path, e: std::io::Error| ConfigError::Io {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let mut paths = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| io(dir, e))? {
        let path = entry.map_err(|e| io(dir, e))?.path();
        let is_yaml = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| e.eq_ignore_ascii_case("yaml") || e.eq_ignore_ascii_case("yml"));
        if is_yaml && path.is_file() {
            paths.push(path);
        }
    }
    paths.sort();
    let mut out = Vec::with_capacity(paths.len());
    for path in paths {
        let text = std::fs::read_to_string(&path).map_err(|e| io(&path, e))?;
        out.push((path.display().to_string(), text));
    }
    Ok(out)
}
