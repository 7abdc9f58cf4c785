"""grpcio's own xDS client against mesh-control-plane; driven by tests/tests/grpcio_interop.rs.

Protocol (one JSON object per line):
  1. starts the backends and prints {"event": "backends", "ports": {NAME: PORT, ...}};
  2. reads {"ads": "127.0.0.1:PORT"} from stdin (the control plane now serves them);
  3. runs every scenario through `xds:///...` channels and prints {"event": "results", ...}.

Backends are generic handlers on raw bytes (no generated stubs); each answers with its own name
and counts the calls it saw. Loopback only. The process ends itself after WATCHDOG_S seconds
whatever happens, so a hung run never outlives the test.
"""
import collections
import json
import os
import sys
import threading
import time
from concurrent import futures

import grpc

WATCHDOG_S = 100
SERVICE, METHOD = "greeter.Greeter", "SayHello"
PATH = f"/{SERVICE}/{METHOD}"
FLAKY_FAILURES = 2  # the flaky backend fails the first N attempts of each x-key
SPLIT_CALLS = 400


def watchdog():
    sys.stderr.write(f"grpcio_xds.py: watchdog fired after {WATCHDOG_S}s\n")
    sys.stderr.flush()
    os._exit(3)


class Backend:
    def __init__(self, name, flaky=False):
        self.name, self.flaky = name, flaky
        self.lock = threading.Lock()
        self.calls = 0
        self.attempts = collections.Counter()  # per x-key
        handler = grpc.method_handlers_generic_handler(
            SERVICE, {METHOD: grpc.unary_unary_rpc_method_handler(self.handle)})
        self.server = grpc.server(futures.ThreadPoolExecutor(8))
        self.server.add_generic_rpc_handlers((handler,))
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    def handle(self, request, context):
        key = dict(context.invocation_metadata()).get("x-key", "")
        with self.lock:
            self.calls += 1
            self.attempts[key] += 1
            attempt = self.attempts[key]
        if self.flaky and attempt <= FLAKY_FAILURES:
            context.abort(grpc.StatusCode.UNAVAILABLE, f"{self.name}: attempt {attempt} fails")
        return self.name.encode()


def call(channel, metadata=(), timeout=10, wait_for_ready=False):
    """One unary call: {"code", "answer" | "details", "elapsed"}."""
    stub = channel.unary_unary(PATH)
    start = time.monotonic()
    try:
        answer = stub(b"hi", timeout=timeout, metadata=list(metadata), wait_for_ready=wait_for_ready)
        return {"code": "OK", "answer": answer.decode(), "elapsed": time.monotonic() - start}
    except grpc.RpcError as e:
        return {"code": e.code().name, "details": e.details() or "",
                "elapsed": time.monotonic() - start}


def counts(results):
    c = collections.Counter(r.get("answer", r["code"]) for r in results)
    return dict(c)


def main():
    threading.Timer(WATCHDOG_S, watchdog).start()
    backends = {b.name: b for b in (Backend("v1"), Backend("v2"), Backend("flaky", flaky=True))}
    print(json.dumps({"event": "backends", "ports": {n: b.port for n, b in backends.items()}}),
          flush=True)
    line = sys.stdin.readline()
    if not line:
        sys.exit("grpcio_xds.py: stdin closed before the ADS address arrived")
    ads = json.loads(line)["ads"]
    os.environ["GRPC_XDS_BOOTSTRAP_CONFIG"] = json.dumps({
        "xds_servers": [{"server_uri": ads, "channel_creds": [{"type": "insecure"}],
                         "server_features": ["xds_v3"]}],
        "node": {"id": "grpcio-interop", "cluster": "interop",
                 "metadata": {"GENERATOR": "grpc"},
                 "locality": {"region": "r1", "zone": "z1"}},
    })
    out = {"event": "results", "grpcio_version": grpc.__version__}
    channels = []

    def channel(target):
        ch = grpc.insecure_channel(f"xds:///{target}")
        channels.append(ch)
        return ch

    # 1. A plain service (no VirtualService): the default route.
    hello = channel("hello:50050")
    first = call(hello, wait_for_ready=True, timeout=20)
    out["greeter"] = {"first": first, "counts": counts([call(hello) for _ in range(20)])}

    # 2. Weighted split 80/20 and 3. header route, both on the FQDN target.
    greeter = channel("greeter.default.svc.cluster.local:50051")
    call(greeter, wait_for_ready=True, timeout=20)
    out["split"] = {"n": SPLIT_CALLS, "counts": counts([call(greeter) for _ in range(SPLIT_CALLS)])}
    out["header"] = {"counts": counts([call(greeter, [("x-user", "jason")]) for _ in range(30)])}

    # 4. Fault injection: aborts never reach the backend; the delay precedes a normal answer.
    faulty = channel("faulty:50052")
    out["fault_none"] = call(faulty, wait_for_ready=True, timeout=20)
    before = backends["v1"].calls
    out["fault_http"] = [call(faulty, [("x-fault", "http")]) for _ in range(5)]
    out["fault_grpc"] = [call(faulty, [("x-fault", "grpc")]) for _ in range(5)]
    out["fault_backend_calls"] = backends["v1"].calls - before
    out["fault_delay"] = call(faulty, [("x-fault", "delay")])

    # 5. Retries on UNAVAILABLE: a VirtualService's policy, istiod's default policy (a host no
    # VirtualService routes), and `attempts: 0` as the control.
    flaky = channel("flaky:50053")
    out["retry"] = [call(flaky, [("x-key", f"r{i}")], wait_for_ready=True, timeout=20)
                    for i in range(5)]
    noretry = channel("flaky-noretry:50054")
    out["no_retry"] = call(noretry, [("x-key", "n0")], wait_for_ready=True, timeout=20)
    default = channel("flaky-default:50056")
    out["default_retry"] = call(default, [("x-key", "d0")], wait_for_ready=True, timeout=20)
    out["flaky_attempts"] = dict(backends["flaky"].attempts)

    # 6. Locality failover: v1 is in the client's region/zone, v2 elsewhere; the control plane
    # rewrites EDS priorities for this client's locality, so grpcio's priority policy keeps
    # every call on v1.
    local = channel("local:50057")
    call(local, wait_for_ready=True, timeout=20)
    out["locality"] = {"counts": counts([call(local) for _ in range(40)])}

    # 7. Last: a listener grpcio must NACK (no http_filters); the call fails, the NACK is sent.
    out["nack"] = call(channel("broken:50055"), timeout=5)

    print(json.dumps(out), flush=True)
    for ch in channels:
        ch.close()
    for b in backends.values():
        b.server.stop(0)
    os._exit(0)


if __name__ == "__main__":
    main()
