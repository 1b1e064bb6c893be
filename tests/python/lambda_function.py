"""A Lambda function using the real OpenFeature flagd provider in RPC mode against the
flagpole extension on localhost, as tests/lambda_extension.rs runs it under the Lambda
emulator.

The runtime loop is the Runtime API's documented contract (GET next, POST response), written
with the standard library so the function needs nothing but the provider. Each event is
{"flags": [{"key": ..., "type": "bool"|"string"|"int"|"float"|"object", "default": ...}]};
the response is {"results": [{"key", "value", "variant", "reason", "error_code"}]}.
"""

import json
import os
import urllib.request

from openfeature import api
from openfeature.contrib.provider.flagd import FlagdProvider
from openfeature.contrib.provider.flagd.config import CacheType, ResolverType

RUNTIME = "http://" + os.environ["AWS_LAMBDA_RUNTIME_API"] + "/2018-06-01/runtime"


def evaluate(client, flag):
    kind, key, default = flag["type"], flag["key"], flag["default"]
    method = {
        "bool": client.get_boolean_details,
        "string": client.get_string_details,
        "int": client.get_integer_details,
        "float": client.get_float_details,
        "object": client.get_object_details,
    }[kind]
    details = method(key, default)
    return {
        "key": key,
        "value": details.value,
        "variant": details.variant,
        "reason": str(getattr(details.reason, "value", details.reason)),
        "error_code": None if details.error_code is None else str(details.error_code.value),
    }


def main():
    # Init phase: the provider connects to the extension on localhost.
    api.set_provider_and_wait(
        FlagdProvider(
            host="localhost",
            port=int(os.environ["FLAGD_PORT"]),
            resolver_type=ResolverType.RPC,
            cache=CacheType.DISABLED,
            deadline_ms=2000,
        )
    )
    client = api.get_client()
    while True:
        with urllib.request.urlopen(RUNTIME + "/invocation/next") as response:
            request_id = response.headers["Lambda-Runtime-Aws-Request-Id"]
            event = json.loads(response.read())
        body = json.dumps({"results": [evaluate(client, f) for f in event["flags"]]}).encode()
        reply = urllib.request.Request(
            RUNTIME + "/invocation/" + request_id + "/response", data=body, method="POST"
        )
        urllib.request.urlopen(reply).read()


if __name__ == "__main__":
    main()
