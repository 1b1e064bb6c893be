"""A gRPC server that refuses every call with PERMISSION_DENIED.

Stands in for the flagd testbed's "forbidden" endpoint (a proxy answering 403), so the
`Provider forbidden` scenario can check that a provider configured with
fatalStatusCodes=PERMISSION_DENIED goes to the FATAL state. Usage: forbidden_server.py PORT
"""

import signal
import sys
from concurrent import futures

import grpc

STREAMING = ("EventStream", "SyncFlags")


def deny(_request, context):
    context.abort(grpc.StatusCode.PERMISSION_DENIED, "forbidden")


class Deny(grpc.GenericRpcHandler):
    """Every method of every service, unary or server-streaming, is denied."""

    def service(self, handler_call_details):
        if handler_call_details.method.rsplit("/", 1)[-1] in STREAMING:
            return grpc.unary_stream_rpc_method_handler(deny)
        return grpc.unary_unary_rpc_method_handler(deny)


def main():
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers((Deny(),))
    server.add_insecure_port(f"127.0.0.1:{int(sys.argv[1])}")
    server.start()
    signal.signal(signal.SIGTERM, lambda *_: server.stop(0))
    server.wait_for_termination()


if __name__ == "__main__":
    main()
