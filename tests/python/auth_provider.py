"""Evaluates one flag through the real OpenFeature Python flagd provider (RPC mode) against a
flagpole that requires a bearer token; used by tests/provider_python.rs.

The provider has no option for extra metadata; gRPC call credentials are how a token travels:
`access_token_call_credentials` sends `authorization: Bearer <token>` on every call. gRPC
attaches call credentials only to secure channels, so they are composed with local
credentials (plaintext loopback TCP counts as secure for them), as a sidecar would, or with
`ssl_channel_credentials` over TLS.

Prints one JSON object: {"ready": bool, "value": ..., "error_code": ...}.
"""

import argparse
import json
import os
import signal

import grpc
from openfeature import api
from openfeature.contrib.provider.flagd import FlagdProvider
from openfeature.contrib.provider.flagd.config import CacheType, ResolverType


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--token", help="bearer token to send (none: send nothing)")
    args = parser.parse_args()
    # A provider retrying forever must not hang the test.
    signal.alarm(60)

    credentials = grpc.local_channel_credentials(grpc.LocalConnectionType.LOCAL_TCP)
    if args.token:
        credentials = grpc.composite_channel_credentials(
            credentials, grpc.access_token_call_credentials(args.token)
        )
    provider = FlagdProvider(
        host="127.0.0.1",
        port=args.port,
        resolver_type=ResolverType.RPC,
        cache=CacheType.DISABLED,
        deadline_ms=2000,
        channel_credentials=credentials,
        fatal_status_codes=["UNAUTHENTICATED"],
    )
    try:
        api.set_provider_and_wait(provider)
        ready = True
    except Exception:  # the provider reports a refused stream as an error or fatal state
        ready = False
    details = api.get_client().get_string_details("color", "fallback")
    print(
        json.dumps(
            {
                "ready": ready,
                "value": details.value,
                "error_code": None
                if details.error_code is None
                else str(details.error_code.value),
            }
        ),
        flush=True,
    )
    # Provider threads may still be reconnecting after a refusal; the answer is out.
    os._exit(0)


if __name__ == "__main__":
    main()
