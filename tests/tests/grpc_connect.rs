//! `MeshChannel::connect` with the bootstrap from the environment (gRFC A27's
//! `GRPC_XDS_BOOTSTRAP_CONFIG`), as a service would use it. A test binary of its own with a
//! single test: the environment is set before any thread of the test starts.

use anyhow::Result;
use examples::greeter::{GreeterBackend, GreeterClient, HelloRequest};
use mesh_grpc::{ChannelError, MeshChannel};

#[test]
fn connect_reads_the_bootstrap_from_the_environment() -> Result<()> {
    // Pick the ADS port up front so the bootstrap can be in the environment before the runtime
    // (and every thread it starts) exists. Loopback only.
    let ads = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    std::env::set_var(
        "GRPC_XDS_BOOTSTRAP_CONFIG",
        format!(
            r#"{{"xds_servers":[{{"server_uri":"{ads}","channel_creds":[{{"type":"insecure"}}]}}],"node":{{"id":"connect-client"}}}}"#
        ),
    );
    tokio::runtime::Runtime::new()?.block_on(async {
        let v1 = GreeterBackend::start("v1").await?;
        let dir = tests::temp_dir("grpc-connect");
        let yaml = format!(
            r#"apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{ name: greeter, namespace: test }}
spec:
  hosts: [greeter.test]
  ports: [{{ number: 50051, name: grpc, protocol: GRPC }}]
  resolution: STATIC
  endpoints: [{{ address: 127.0.0.1, ports: {{ grpc: {port} }} }}]
"#,
            port = v1.addr().port()
        );
        tests::write(&dir, "greeter.yaml", &yaml);
        let _cp = tests::control_plane(&dir, &ads.to_string()).await?;

        let channel = MeshChannel::connect("xds:///greeter.test:50051").await?;
        assert_eq!(channel.target(), "greeter.test:50051");
        let reply = GreeterClient::new(channel)
            .say_hello(HelloRequest { name: "env".into() })
            .await?;
        assert_eq!(reply.into_inner().message, "hello env from v1");

        // The control plane has no such listener: connect fails with the target named, not
        // with a timeout.
        // (On a fresh ADS stream this currently takes mesh-core's 15 s does-not-exist timer: a
        // SotW LDS response that omits a never-received name is not taken as "does not exist".)
        let err = MeshChannel::connect("xds:///nope.test:50051")
            .await
            .unwrap_err();
        assert!(matches!(err, ChannelError::Target(_)), "{err:?}");
        assert!(err.to_string().contains("nope.test:50051"), "{err}");
        anyhow::Ok(())
    })
}
