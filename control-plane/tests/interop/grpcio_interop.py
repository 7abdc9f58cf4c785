"""Interop check: Python grpcio (gRPC C-core's xDS client) against mesh-control-plane.

    python3 -m venv .venv-interop && .venv-interop/bin/pip install grpcio
    cargo build -p mesh-control-plane
    .venv-interop/bin/python control-plane/tests/interop/grpcio_interop.py target/debug/mesh-control-plane

Starts two echo backends (v1, v2), serves a ServiceEntry + DestinationRule (LEAST_REQUEST,
subsets) + VirtualService (header match, 80/20 split) and calls `xds:///echo:50051` and the FQDN
target; fails if grpcio NACKs anything or routing is off.
"""
import json, os, socket, subprocess, sys, tempfile, time, collections, urllib.request
from concurrent import futures
import grpc

def serve(name):
    def ping(req, ctx): return name.encode()
    h = grpc.method_handlers_generic_handler("test.Echo", {"Ping": grpc.unary_unary_rpc_method_handler(ping)})
    s = grpc.server(futures.ThreadPoolExecutor(4)); s.add_generic_rpc_handlers((h,))
    port = s.add_insecure_port("127.0.0.1:0"); s.start(); return s, port

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0)); return s.getsockname()[1]

s1, p1 = serve("v1"); s2, p2 = serve("v2")
ads, admin = free_port(), free_port()
mesh = tempfile.mkdtemp()
open(os.path.join(mesh, "echo.yaml"), "w").write(f"""
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{ name: echo }}
spec:
  hosts: [echo.default.svc.cluster.local]
  ports: [{{ number: 50051, name: grpc, protocol: GRPC }}]
  endpoints:
  - {{ address: 127.0.0.1, ports: {{ grpc: {p1} }}, labels: {{ version: v1 }} }}
  - {{ address: 127.0.0.1, ports: {{ grpc: {p2} }}, labels: {{ version: v2 }} }}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{ name: echo }}
spec:
  host: echo
  trafficPolicy: {{ loadBalancer: {{ simple: LEAST_REQUEST }} }}
  subsets:
  - {{ name: v1, labels: {{ version: v1 }} }}
  - {{ name: v2, labels: {{ version: v2 }} }}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{ name: echo }}
spec:
  hosts: [echo]
  http:
  - match: [{{ headers: {{ x-user: {{ exact: jason }} }} }}]
    route: [{{ destination: {{ host: echo, subset: v2 }} }}]
  - match: [{{ uri: {{ regex: "/test\\\\.Echo/.*" }} }}]
    route:
    - {{ destination: {{ host: echo, subset: v1 }}, weight: 80 }}
    - {{ destination: {{ host: echo, subset: v2 }}, weight: 20 }}
""")
cp = subprocess.Popen([sys.argv[1], "--config", mesh, "--listen", f"127.0.0.1:{ads}", "--admin", f"127.0.0.1:{admin}"])
try:
    for _ in range(100):  # wait for /ready
        try:
            if urllib.request.urlopen(f"http://127.0.0.1:{admin}/ready").status == 200: break
        except Exception: pass
        time.sleep(0.1)
    os.environ["GRPC_XDS_BOOTSTRAP_CONFIG"] = json.dumps({
        "xds_servers": [{"server_uri": f"127.0.0.1:{ads}", "channel_creds": [{"type": "insecure"}], "server_features": ["xds_v3"]}],
        "node": {"id": "py-client", "cluster": "demo", "metadata": {"GENERATOR": "grpc"}, "locality": {"zone": "z1"}}})
    for target in ["xds:///echo:50051", "xds:///echo.default.svc.cluster.local:50051"]:
        ch = grpc.insecure_channel(target)
        call = ch.unary_unary("/test.Echo/Ping")
        c = collections.Counter(call(b"x", timeout=10).decode() for _ in range(200))
        j = collections.Counter(call(b"x", timeout=10, metadata=[("x-user","jason")]).decode() for _ in range(20))
        print(target, "split", dict(c), "jason", dict(j))
        assert j == {"v2": 20}, j
        assert 120 <= c["v1"] <= 190, c  # 80 % of 200 = 160, sd ~5.7: bounds lie beyond 5 sd
        ch.close()
    dbg = json.load(urllib.request.urlopen(f"http://127.0.0.1:{admin}/debug/config"))
    for cl in dbg["clients"]:
        print(cl["node"]["id"], cl["node"]["user_agent_name"], cl["node"]["generator"], {t: (v["acked_version"], v["last_nack"]) for t, v in cl["types"].items()})
        assert all(v["last_nack"] is None for v in cl["types"].values()), cl
    print("ok")
finally:
    cp.terminate(); cp.wait(); s1.stop(0); s2.stop(0)
