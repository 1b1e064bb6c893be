"""Waits until a freshly started flagpole serves the testbed's flags.

Ready means what the flagd testbed's launchpad waits for: the readiness probe answers 200 (when
the management port answers HTTP at all) and one enabled flag of every file source evaluates
without FLAG_NOT_FOUND over gRPC (and, with --sync-port, the sync service hands out flags).
Exits 0 when ready, 1 on timeout or when the daemon process is gone.
"""

import argparse
import json
import os
import pathlib
import sys
import time
import urllib.error
import urllib.request

import grpc
from openfeature.schemas.protobuf.flagd.evaluation.v1 import (
    evaluation_pb2,
    evaluation_pb2_grpc,
)
from openfeature.schemas.protobuf.flagd.sync.v1 import sync_pb2, sync_pb2_grpc


def probe_keys(config_path):
    """One enabled flag key (the first by name) per file source."""
    config = json.loads(pathlib.Path(config_path).read_text(encoding="utf-8"))
    base = pathlib.Path(config_path).parent
    keys = []
    for source in config.get("sources", []):
        if source.get("provider") != "file":
            continue
        flags = json.loads((base / source["uri"]).read_text(encoding="utf-8"))["flags"]
        enabled = sorted(k for k, f in flags.items() if f.get("state") != "DISABLED")
        keys.append(enabled[0])
    return keys


def alive(pid_file):
    try:
        pid = int(pathlib.Path(pid_file).read_text().strip())
    except (OSError, ValueError):
        return False
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


class Readyz:
    """The management port's /readyz; ignored while that port does not speak HTTP."""

    def __init__(self, port):
        self.url = f"http://127.0.0.1:{port}/readyz"
        self.served = True

    def ready(self):
        if not self.served:
            return True
        try:
            with urllib.request.urlopen(self.url, timeout=0.5) as response:
                return response.status == 200
        except urllib.error.HTTPError:
            return False
        except ConnectionRefusedError:
            return False
        except (TimeoutError, OSError) as error:
            if isinstance(getattr(error, "reason", None), ConnectionRefusedError):
                return False
            # Bound but not answering HTTP: the management service is not served.
            self.served = False
            return True


def served(stub, key):
    try:
        stub.ResolveBoolean(evaluation_pb2.ResolveBooleanRequest(flag_key=key), timeout=1)
    except grpc.RpcError as error:
        return error.code() not in (
            grpc.StatusCode.NOT_FOUND,
            grpc.StatusCode.UNAVAILABLE,
            grpc.StatusCode.DEADLINE_EXCEEDED,
        )
    return True


def sync_served(stub):
    try:
        response = stub.FetchAllFlags(sync_pb2.FetchAllFlagsRequest(), timeout=1)
    except grpc.RpcError:
        return False
    return bool(json.loads(response.flag_configuration or "{}").get("flags"))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int)
    parser.add_argument("--socket", help="unix socket of the evaluation service (instead of --port)")
    parser.add_argument("--management-port", type=int, required=True)
    parser.add_argument("--sync-port", type=int)
    parser.add_argument("--sync-socket", help="unix socket of the sync service")
    parser.add_argument("--config", required=True)
    parser.add_argument("--pid-file", required=True)
    parser.add_argument("--timeout", type=float, default=20)
    parser.add_argument("--ca", help="CA certificate (PEM): the ports serve TLS")
    args = parser.parse_args()

    if args.ca:
        with open(args.ca, "rb") as f:
            credentials = grpc.ssl_channel_credentials(root_certificates=f.read())

        def open_channel(target):
            return grpc.secure_channel(target, credentials)

    else:
        open_channel = grpc.insecure_channel

    def open_socket_channel(path):
        # grpcio >= 1.57 would send the %-encoded socket path as :authority, which the HTTP/2
        # server rejects (see skips.json, @unixsocket); this probe is ours, so it names a host.
        return grpc.insecure_channel(
            f"unix:{path}", options=[("grpc.default_authority", "localhost")]
        )

    if (args.port is None) == (args.socket is None):
        parser.error("give exactly one of --port and --socket")
    keys = probe_keys(args.config)
    readyz = Readyz(args.management_port)
    if args.socket:
        channel = open_socket_channel(args.socket)
    else:
        channel = open_channel(f"127.0.0.1:{args.port}")
    stub = evaluation_pb2_grpc.ServiceStub(channel)
    sync_stub = None
    if args.sync_socket:
        sync_stub = sync_pb2_grpc.FlagSyncServiceStub(open_socket_channel(args.sync_socket))
    elif args.sync_port:
        sync_stub = sync_pb2_grpc.FlagSyncServiceStub(
            open_channel(f"127.0.0.1:{args.sync_port}")
        )
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        if not alive(args.pid_file):
            print("probe: flagpole is not running", file=sys.stderr)
            return 1
        if (
            readyz.ready()
            and all(served(stub, key) for key in keys)
            and (sync_stub is None or sync_served(sync_stub))
        ):
            return 0
        time.sleep(0.05)
    print(f"probe: flagpole not ready after {args.timeout}s", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
