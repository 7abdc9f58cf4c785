//! Compiles the Envoy `.proto` files shipped inside the `envoy-types` crate into one
//! `FileDescriptorSet` (with `protox`, pure Rust, no `protoc`), written to
//! `$OUT_DIR/envoy_descriptor.bin` and embedded by `src/source/pool.rs`. The static-file source
//! needs descriptors to read Envoy resources in the protobuf JSON mapping, which `envoy-types`
//! (prost, no serde) cannot do by itself.
//!
//! The proto directory is found, in order: `$ENVOY_TYPES_PROTO_DIR`; else
//! `$CARGO_HOME/registry/src/*/envoy-types-<version>/proto` (`CARGO_HOME` defaults to
//! `~/.cargo`), with `<version>` read from the workspace `Cargo.lock`.

use std::{
    env, fs,
    path::{Path, PathBuf},
    time::Instant,
};

/// Directories (under `data-plane-api/`) whose `.proto` files are compiled as roots; imports are
/// pulled in transitively. Resources, the HTTP connection manager and the filters the mesh
/// interprets, TLS, load-balancing policies, and the extension types the fixtures and Istio use.
const ROOT_DIRS: &[&str] = &[
    "envoy/config/listener/v3",
    "envoy/config/route/v3",
    "envoy/config/cluster/v3",
    "envoy/config/endpoint/v3",
    "envoy/config/rbac/v3",
    "envoy/service/discovery/v3",
    "envoy/extensions/filters/network/http_connection_manager/v3",
    "envoy/extensions/filters/network/tcp_proxy/v3",
    "envoy/extensions/filters/network/rbac/v3",
    "envoy/extensions/filters/network/set_filter_state/v3",
    "envoy/extensions/filters/http/router/v3",
    "envoy/extensions/filters/http/fault/v3",
    "envoy/extensions/filters/http/rbac/v3",
    "envoy/extensions/filters/http/jwt_authn/v3",
    "envoy/extensions/filters/http/cors/v3",
    "envoy/extensions/filters/http/grpc_stats/v3",
    "envoy/extensions/filters/http/ext_authz/v3",
    "envoy/extensions/filters/http/wasm/v3",
    "envoy/extensions/filters/http/stateful_session/v3",
    "envoy/extensions/filters/listener/http_inspector/v3",
    "envoy/extensions/filters/listener/tls_inspector/v3",
    "envoy/extensions/filters/listener/original_dst/v3",
    "envoy/extensions/transport_sockets/tls/v3",
    "envoy/extensions/transport_sockets/raw_buffer/v3",
    "envoy/extensions/transport_sockets/internal_upstream/v3",
    "envoy/extensions/upstreams/http/v3",
    "envoy/extensions/request_id/uuid/v3",
    "envoy/extensions/retry/host/previous_hosts/v3",
    "envoy/extensions/retry/priority/previous_priorities/v3",
    "envoy/extensions/matching/common_inputs/network/v3",
    "envoy/extensions/matching/input_matchers/ip/v3",
    "envoy/extensions/load_balancing_policies/client_side_weighted_round_robin/v3",
    "envoy/extensions/load_balancing_policies/cluster_provided/v3",
    "envoy/extensions/load_balancing_policies/least_request/v3",
    "envoy/extensions/load_balancing_policies/maglev/v3",
    "envoy/extensions/load_balancing_policies/override_host/v3",
    "envoy/extensions/load_balancing_policies/pick_first/v3",
    "envoy/extensions/load_balancing_policies/random/v3",
    "envoy/extensions/load_balancing_policies/ring_hash/v3",
    "envoy/extensions/load_balancing_policies/round_robin/v3",
    "envoy/extensions/load_balancing_policies/wrr_locality/v3",
];

/// Include roots inside the `envoy-types` proto directory.
const INCLUDES: &[&str] = &[
    "data-plane-api",
    "xds",
    "googleapis",
    "protoc-gen-validate",
    "cel-spec",
    "opentelemetry-proto",
    "client_model",
    "ratelimit",
];

/// Extra files: `TypedStruct` is not shipped by `envoy-types` but is how Istio wraps many
/// extension configs (cncf/xds `udpa/type/v1/typed_struct.proto`, `xds/type/v3/typed_struct.proto`,
/// Apache-2.0); `OpaqueJson` is the static source's stand-in for an `Any` of a type not in the pool.
const EXTRA_PROTOS: &[(&str, &str)] = &[
    (
        "udpa/type/v1/typed_struct.proto",
        "syntax = \"proto3\";\npackage udpa.type.v1;\nimport \"google/protobuf/struct.proto\";\n\
         message TypedStruct {\n  string type_url = 1;\n  google.protobuf.Struct value = 2;\n}\n",
    ),
    (
        "xds/type/v3/typed_struct.proto",
        "syntax = \"proto3\";\npackage xds.type.v3;\nimport \"google/protobuf/struct.proto\";\n\
         message TypedStruct {\n  string type_url = 1;\n  google.protobuf.Struct value = 2;\n}\n",
    ),
    (
        "mesh/source/v1/opaque_json.proto",
        "syntax = \"proto3\";\npackage mesh.source.v1;\n\
         message OpaqueJson {\n  string type_url = 1;\n  string json = 2;\n}\n",
    ),
];

fn main() {
    if let Err(e) = run() {
        // A build script reports failure by panicking; the message is what the user sees.
        panic!("mesh-core build script: {e}");
    }
}

fn run() -> Result<(), String> {
    let started = Instant::now();
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=ENVOY_TYPES_PROTO_DIR");
    println!("cargo:rerun-if-env-changed=CARGO_HOME");

    let out_dir = PathBuf::from(env::var("OUT_DIR").map_err(|e| format!("OUT_DIR: {e}"))?);
    let proto_dir = find_proto_dir()?;
    println!("cargo:rerun-if-changed={}", proto_dir.display());

    // The extra definitions go in their own include root.
    let extra = out_dir.join("extra_protos");
    for (name, text) in EXTRA_PROTOS {
        let path = extra.join(name);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    }

    let mut includes: Vec<PathBuf> = INCLUDES
        .iter()
        .map(|i| proto_dir.join(i))
        .filter(|p| p.is_dir())
        .collect();
    includes.push(extra.clone());

    let mut files: Vec<PathBuf> = EXTRA_PROTOS.iter().map(|(n, _)| PathBuf::from(n)).collect();
    let api = proto_dir.join("data-plane-api");
    for dir in ROOT_DIRS {
        let full = api.join(dir);
        let entries = fs::read_dir(&full).map_err(|e| format!("{}: {e}", full.display()))?;
        let mut protos: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "proto"))
            .filter_map(|p| p.file_name().map(|f| Path::new(dir).join(f)))
            .collect();
        protos.sort();
        files.extend(protos);
    }

    let mut compiler = protox::Compiler::new(&includes).map_err(|e| e.to_string())?;
    compiler.include_imports(true).include_source_info(false);
    compiler
        .open_files(&files)
        .map_err(|e| format!("compiling envoy protos: {e}"))?;
    let bytes = compiler.encode_file_descriptor_set();
    let dest = out_dir.join("envoy_descriptor.bin");
    fs::write(&dest, &bytes).map_err(|e| format!("{}: {e}", dest.display()))?;
    // Kept for whoever wants to know what the build script costs (see the source module docs).
    let report = format!(
        "roots: {}\nfiles: {}\nbytes: {}\nmillis: {}\n",
        files.len(),
        compiler.files().len(),
        bytes.len(),
        started.elapsed().as_millis()
    );
    fs::write(out_dir.join("envoy_descriptor.stats"), report).map_err(|e| e.to_string())?;
    Ok(())
}

fn find_proto_dir() -> Result<PathBuf, String> {
    if let Some(dir) = env::var_os("ENVOY_TYPES_PROTO_DIR") {
        let dir = PathBuf::from(dir);
        return if dir.is_dir() {
            Ok(dir)
        } else {
            Err(format!(
                "ENVOY_TYPES_PROTO_DIR={} is not a directory",
                dir.display()
            ))
        };
    }
    let manifest = PathBuf::from(
        env::var("CARGO_MANIFEST_DIR").map_err(|e| format!("CARGO_MANIFEST_DIR: {e}"))?,
    );
    let lock = manifest
        .ancestors()
        .map(|d| d.join("Cargo.lock"))
        .find(|p| p.is_file())
        .ok_or("no Cargo.lock above CARGO_MANIFEST_DIR; set ENVOY_TYPES_PROTO_DIR")?;
    println!("cargo:rerun-if-changed={}", lock.display());
    let text = fs::read_to_string(&lock).map_err(|e| format!("{}: {e}", lock.display()))?;
    let version = locked_version(&text, "envoy-types")
        .ok_or_else(|| format!("envoy-types not found in {}", lock.display()))?;

    let cargo_home = env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .ok_or("neither CARGO_HOME nor HOME is set; set ENVOY_TYPES_PROTO_DIR")?;
    let registry = cargo_home.join("registry").join("src");
    let wanted = format!("envoy-types-{version}");
    let mut candidates: Vec<PathBuf> = fs::read_dir(&registry)
        .map_err(|e| format!("{}: {e}", registry.display()))?
        .filter_map(|e| e.ok().map(|e| e.path().join(&wanted).join("proto")))
        .filter(|p| p.is_dir())
        .collect();
    candidates.sort();
    candidates.into_iter().next().ok_or_else(|| {
        format!(
            "{wanted}/proto not found under {}/*; set ENVOY_TYPES_PROTO_DIR",
            registry.display()
        )
    })
}

/// The version of `name` in a `Cargo.lock` (the first `[[package]]` with that name).
fn locked_version(lock: &str, name: &str) -> Option<String> {
    let want = format!("name = \"{name}\"");
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line.trim() == want {
            for next in lines.by_ref() {
                let next = next.trim();
                if let Some(v) = next.strip_prefix("version = \"") {
                    return v.strip_suffix('"').map(str::to_owned);
                }
                if next.is_empty() || next.starts_with('[') {
                    break;
                }
            }
        }
    }
    None
}
