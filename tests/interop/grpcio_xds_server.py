"""grpcio's own xDS *server* (gRFC A36) and xDS client configured by mesh-control-plane, in
plaintext or with xDS security (gRFC A29); driven by tests/tests/grpcio_server_interop.rs and
tests/tests/grpcio_mtls_interop.rs.

Protocol (one JSON object per line):
  1. reads {"ads": "127.0.0.1:PORT", "port": N, "template": T, "target": "xds:///HOST:PORT"}
     from stdin, optionally with "certs": {"cert": F, "key": F, "ca": F}: then the bootstrap
     has a `file_watcher` certificate provider `default` (gRFC A29) and the client channel
     uses `xds_channel_credentials`, so TLS comes from the xDS security config; also
     optionally "node" (the node id, default `grpcio-server`), and "port": null for no server
     (the process is then only an xDS client; "template" may be absent);
  2. starts `helloworld.Greeter` (SayHello, SayGoodbye) as an xDS server on 127.0.0.1:N — its
     inbound Listener is the template T with `%s` = `127.0.0.1:N`, fetched from our control
     plane — and prints {"event": "started"} (also when there is no server);
  3. on {"client": true} (optionally with "target": another xds:/// target) calls the server
     through grpcio's xDS client on `target` and prints
     {"event": "client", ...}: SayHello (waiting up to CLIENT_READY_S for the server to serve,
     or with "wait": false failing fast after "timeout" seconds) and SayGoodbye (unless
     "methods" lists only some), each with its status code;
  4. on {"counts": true} prints {"event": "counts", "SayHello": n, "SayGoodbye": m}: the calls
     the handlers saw (a call the RBAC filter denies never reaches them);
  5. on end of stdin stops the server and exits.

Handlers work on raw bytes (no generated stubs): `HelloRequest`/`HelloReply` are one string in
field 1. The reply is `<word> <name> from grpcio`, followed by ` as <SPIFFE ID>` when the caller
presented a verified certificate (mTLS). Loopback only. The process ends itself after WATCHDOG_S seconds whatever happens.
"""
import json
import os
import sys
import threading
import time
from concurrent import futures

import grpc
import grpc.experimental

WATCHDOG_S = 100
CLIENT_READY_S = 20
SERVICE = "helloworld.Greeter"


def watchdog():
    sys.stderr.write(f"grpcio_xds_server.py: watchdog fired after {WATCHDOG_S}s\n")
    sys.stderr.flush()
    os._exit(3)


def field1(data):
    """The string in field 1 of a message holding only that (tag 0x0a, varint length)."""
    if not data or data[0] != 0x0A:
        return ""
    n, shift, i = 0, 0, 1
    while i < len(data):
        b = data[i]
        n |= (b & 0x7F) << shift
        i += 1
        if b < 0x80:
            break
        shift += 7
    return data[i:i + n].decode("utf-8", "replace")


def message(text):
    """A message holding `text` in field 1."""
    body = text.encode()
    n, length = len(body), bytearray()
    while True:
        if n < 0x80:
            length.append(n)
            break
        length.append((n & 0x7F) | 0x80)
        n >>= 7
    return b"\x0a" + bytes(length) + body


class Greeter:
    def __init__(self):
        self.lock = threading.Lock()
        self.counts = {"SayHello": 0, "SayGoodbye": 0}

    def handler(self, method, word):
        def handle(request, context):
            with self.lock:
                self.counts[method] += 1
            peer = peer_spiffe_id(context)
            suffix = f" as {peer}" if peer else ""
            return message(f"{word} {field1(request)} from grpcio{suffix}")
        return grpc.unary_unary_rpc_method_handler(handle)


def peer_spiffe_id(context):
    """The caller's SPIFFE ID from its verified certificate's URI SAN; None in plaintext."""
    auth = context.auth_context() or {}
    for key in ("peer_spiffe_id", "x509_uri_subject_alternative_name",
                "x509_subject_alternative_name"):
        for value in auth.get(key, ()):
            text = value.decode("utf-8", "replace")
            if text.startswith("spiffe://"):
                return text
    return None


def call(channel, method, timeout, wait_for_ready=False):
    stub = channel.unary_unary(f"/{SERVICE}/{method}")
    start = time.monotonic()
    try:
        answer = stub(message("py"), timeout=timeout, wait_for_ready=wait_for_ready)
        return {"code": "OK", "answer": field1(answer), "elapsed": time.monotonic() - start}
    except grpc.RpcError as e:
        return {"code": e.code().name, "details": e.details() or "",
                "elapsed": time.monotonic() - start}


def main():
    timer = threading.Timer(WATCHDOG_S, watchdog)
    timer.daemon = True  # fires only while the script hangs; never keeps it alive
    timer.start()
    line = sys.stdin.readline()
    if not line:
        sys.exit("grpcio_xds_server.py: stdin closed before the setup line arrived")
    setup = json.loads(line)
    bootstrap = {
        "xds_servers": [{"server_uri": setup["ads"], "channel_creds": [{"type": "insecure"}],
                         "server_features": ["xds_v3"]}],
        "node": {"id": setup.get("node", "grpcio-server"), "cluster": "interop",
                 "metadata": {"GENERATOR": "grpc"}, "locality": {"zone": "z1"}},
    }
    if setup.get("template"):
        bootstrap["server_listener_resource_name_template"] = setup["template"]
    certs = setup.get("certs")
    if certs:
        bootstrap["certificate_providers"] = {"default": {"plugin_name": "file_watcher", "config": {
            "certificate_file": certs["cert"], "private_key_file": certs["key"],
            "ca_certificate_file": certs["ca"], "refresh_interval": "600s"}}}
    os.environ["GRPC_XDS_BOOTSTRAP_CONFIG"] = json.dumps(bootstrap)
    greeter = Greeter()
    server = None
    if setup.get("port"):
        handlers = grpc.method_handlers_generic_handler(SERVICE, {
            "SayHello": greeter.handler("SayHello", "hello"),
            "SayGoodbye": greeter.handler("SayGoodbye", "goodbye"),
        })
        server = grpc.server(futures.ThreadPoolExecutor(8), xds=True)
        server.add_generic_rpc_handlers((handlers,))
        creds = grpc.xds_server_credentials(grpc.insecure_server_credentials())
        # An xDS server binds only once its Listener arrived (A36), so C-core answers -1 ("port
        # not known yet") here rather than the port; 0 is the failure.
        added = server.add_secure_port(f"127.0.0.1:{setup['port']}", creds)
        if added not in (-1, setup["port"]):
            sys.exit(f"grpcio_xds_server.py: add_secure_port answered {added}")
        server.start()
    print(json.dumps({"event": "started", "grpcio_version": grpc.__version__}), flush=True)

    channels = {}
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd.get("client"):
            target = cmd.get("target", setup["target"])
            if target not in channels:
                if certs:
                    fallback = grpc.experimental.insecure_channel_credentials()
                    creds = grpc.xds_channel_credentials(fallback)
                    channels[target] = grpc.secure_channel(target, creds)
                else:
                    channels[target] = grpc.insecure_channel(target)
            channel = channels[target]
            methods = cmd.get("methods", ["SayHello", "SayGoodbye"])
            out = {"event": "client"}
            if "SayHello" in methods:
                if cmd.get("wait", True):
                    out["SayHello"] = call(channel, "SayHello", CLIENT_READY_S,
                                           wait_for_ready=True)
                else:
                    out["SayHello"] = call(channel, "SayHello", cmd.get("timeout", 10))
            if "SayGoodbye" in methods:
                out["SayGoodbye"] = call(channel, "SayGoodbye", 10)
            print(json.dumps(out), flush=True)
        elif cmd.get("counts"):
            with greeter.lock:
                counts = dict(greeter.counts)
            print(json.dumps({"event": "counts", **counts}), flush=True)
    for channel in channels.values():
        channel.close()
    if server is not None:
        server.stop(0)
    os._exit(0)


if __name__ == "__main__":
    main()
