"""Drives a running flagpole through the real OpenFeature Python flagd provider.

Used by tests/provider_python.rs, in RPC mode (evaluation port) or in-process mode (sync
port, evaluating locally with the provider's own flagd core). Prints one JSON object per
line on stdout:
  {"step": "evaluate", ...details...} for each evaluation, then
  {"step": "changed", "flags": [...], "delay_ms": N} after the flag file is rewritten, then
  one more evaluation of string-flag.
Exits non-zero if the provider never becomes ready or no change event arrives.
"""

import argparse
import json
import os
import sys
import threading
import time

from openfeature import api
from openfeature.contrib.provider.flagd import FlagdProvider
from openfeature.contrib.provider.flagd.config import CacheType, ResolverType
from openfeature.evaluation_context import EvaluationContext
from openfeature.event import ProviderEvent


def emit(**fields):
    print(json.dumps(fields, sort_keys=True), flush=True)


def details_dict(kind, key, details, targeting_key="user-1"):
    return {
        "step": "evaluate",
        "type": kind,
        "key": key,
        "targeting_key": targeting_key,
        "value": details.value,
        "variant": details.variant,
        "reason": str(getattr(details.reason, "value", details.reason)),
        "error_code": None if details.error_code is None else str(details.error_code.value),
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--mode", choices=["rpc", "in-process"], default="rpc")
    parser.add_argument("--flag-file", required=True, help="watched file to rewrite")
    parser.add_argument("--new-content", required=True, help="file whose content is written")
    args = parser.parse_args()

    resolver = ResolverType.RPC if args.mode == "rpc" else ResolverType.IN_PROCESS
    provider = FlagdProvider(
        host="127.0.0.1",
        port=args.port,
        resolver_type=resolver,
        cache=CacheType.DISABLED,
        deadline_ms=2000,
    )
    changed = threading.Event()
    changed_flags = []

    def on_change(details):
        changed_flags.extend(details.flags_changed or [])
        changed.set()

    api.add_handler(ProviderEvent.PROVIDER_CONFIGURATION_CHANGED, on_change)
    api.set_provider_and_wait(provider)
    client = api.get_client()

    ctx = EvaluationContext(targeting_key="user-1", attributes={"email": "ann@example.com"})
    checks = [
        ("boolean", "bool-flag", client.get_boolean_details, False),
        ("string", "string-flag", client.get_string_details, "fallback"),
        ("integer", "int-flag", client.get_integer_details, 0),
        ("float", "float-flag", client.get_float_details, 0.0),
        ("object", "object-flag", client.get_object_details, {}),
        ("string", "targeted-flag", client.get_string_details, "fallback"),
        ("string", "missing-flag", client.get_string_details, "fallback"),
        ("boolean", "string-flag", client.get_boolean_details, True),
        ("boolean", "disabled-flag", client.get_boolean_details, True),
    ]
    for kind, key, get, default in checks:
        emit(**details_dict(kind, key, get(key, default, ctx)))
    # Fractional bucketing over several targeting keys (the in-process core hashes locally).
    for i in range(20):
        tk = f"user-{i}"
        details = client.get_string_details(
            "fractional-flag", "fallback", EvaluationContext(targeting_key=tk)
        )
        emit(**details_dict("string", "fractional-flag", details, tk))

    # The in-process provider reports its initial sync as a change too: forget it.
    changed.clear()
    changed_flags.clear()

    with open(args.new_content, "rb") as src:
        content = src.read()
    started = time.monotonic()
    tmp = args.flag_file + ".tmp"
    with open(tmp, "wb") as dst:
        dst.write(content)
    os.replace(tmp, args.flag_file)
    if not changed.wait(10):
        emit(step="changed", flags=[], delay_ms=None)
        sys.exit(2)
    emit(step="changed", flags=sorted(changed_flags), delay_ms=round((time.monotonic() - started) * 1000, 1))
    details = client.get_string_details("string-flag", "fallback", ctx)
    emit(**details_dict("string", "string-flag", details))
    api.shutdown()


if __name__ == "__main__":
    main()
