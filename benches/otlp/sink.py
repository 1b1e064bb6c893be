"""An OTLP/gRPC trace sink for measuring what tracing costs flagpole (scripts/bench `otel`).

Answers every TraceService/Export with an empty success and keeps only counts: it never
decodes a request, so the collector side costs as little as possible and the measured
difference is flagpole's own (spans, batching, encoding, export). Prints one JSON line with
the number of exports and bytes received when it gets SIGTERM or SIGINT.

    python sink.py PORT
"""

import json
import signal
import sys
import threading
from concurrent import futures

import grpc

exports = 0
received = 0
lock = threading.Lock()


def export(request: bytes, context) -> bytes:
    global exports, received
    with lock:
        exports += 1
        received += len(request)
    return b""  # an empty ExportTraceServiceResponse: full success


def main() -> None:
    port = int(sys.argv[1])
    handler = grpc.method_handlers_generic_handler(
        "opentelemetry.proto.collector.trace.v1.TraceService",
        {"Export": grpc.unary_unary_rpc_method_handler(export)},
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    print(f"otlp sink on 127.0.0.1:{port}", file=sys.stderr, flush=True)
    done.wait()
    server.stop(0)
    print(json.dumps({"exports": exports, "bytes": received}), flush=True)


if __name__ == "__main__":
    main()
