"""Step definitions for the flagd-testbed provider scenarios (gherkin/*.feature), driving the
real OpenFeature Python SDK and flagd provider against a flagpole started by
tests/conformance/run. The environment is changed through tests/conformance/control, which
plays the part of the testbed's launchpad (restart after a connection loss, flag change).
"""

import json
import os
import re
import socket
import subprocess
import time

from behave import step, use_step_matcher

from openfeature import api
from openfeature.contrib.provider.flagd import FlagdProvider
from openfeature.contrib.provider.flagd.config import CacheType, ResolverType
from openfeature.evaluation_context import EvaluationContext
from openfeature.event import ProviderEvent
from openfeature.provider import ProviderStatus

use_step_matcher("re")

WORK = os.environ["CONFORMANCE_WORK"]
CONTROL = os.environ["CONFORMANCE_CONTROL"]
EVENT_TIMEOUT_S = 20
READY_TIMEOUT_S = 10

EVENTS = {
    "ready": ProviderEvent.PROVIDER_READY,
    "error": ProviderEvent.PROVIDER_ERROR,
    "stale": ProviderEvent.PROVIDER_STALE,
    "change": ProviderEvent.PROVIDER_CONFIGURATION_CHANGED,
}


def _ports():
    ports = {}
    with open(os.path.join(WORK, "ports"), encoding="utf-8") as f:
        for line in f:
            name, _, value = line.strip().partition("=")
            if value.isdigit():
                ports[name] = int(value)
    return ports


PORTS = _ports()

# Set once a scenario has stopped flagpole: the next provider waits until it serves again.
# (Module state: attributes set on behave's context in a step die with the scenario.)
_flagpole_disturbed = False


def _bool(text):
    return text.strip().lower() == "true"


CASTS = {
    "Boolean": _bool,
    "String": str,
    "Integer": int,
    "Long": int,
    "Float": float,
    "Object": json.loads,
}


def _cast(kind, text):
    if kind not in CASTS:
        raise AssertionError(f"unknown type {kind}")
    return CASTS[kind](text)


def _control(*args):
    subprocess.run([CONTROL, *args], check=True, stdin=subprocess.DEVNULL)


def _unused_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _snake(name):
    return re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).lower()


OPTION_TYPES = {
    "CacheType": CacheType,
    "String": str,
    "Integer": int,
    "Long": int,
    "Boolean": _bool,
    "StringList": lambda s: [item.strip() for item in s.split(",") if item.strip()],
    "ResolverType": lambda s: ResolverType(s.lower()),
}


# --- configuration and provider -----------------------------------------------------------


@step(r'an option "(?P<name>[^"]+)" of type "(?P<kind>[^"]+)" with value "(?P<value>[^"]*)"')
def option(context, name, kind, value):
    context.options[_snake(name)] = OPTION_TYPES[kind](value)


@step(r"a (?P<kind>\w+) flagd provider")
def provider(context, kind):
    global _flagpole_disturbed
    if _flagpole_disturbed or os.path.exists(os.path.join(WORK, "restarting")):
        _control("await-up")
        _flagpole_disturbed = False
    in_process = context.mode == "in-process"
    options = {
        "resolver_type": ResolverType.IN_PROCESS if in_process else ResolverType.RPC,
        "host": "127.0.0.1",
        "port": PORTS["SYNC_PORT"] if in_process else PORTS["EVAL_PORT"],
        "deadline_ms": 1000,
        "stream_deadline_ms": 0,
        "retry_backoff_ms": 500,
        "retry_backoff_max_ms": 1000,
        "retry_grace_period": 2,
    }
    wait = True
    if kind == "unavailable":
        options["port"] = _unused_port()
        wait = False
    elif kind == "forbidden":
        options["port"] = PORTS["FORBIDDEN_PORT"]
        wait = False
    elif kind == "ssl":
        # The TLS instance, trusting only the run's throw-away CA (tests/support/gen-test-certs).
        options["port"] = PORTS["SSL_SYNC_PORT"] if in_process else PORTS["SSL_EVAL_PORT"]
        options["tls"] = True
        options["cert_path"] = os.path.join(WORK, "certs", "ca.pem")
    elif kind not in ("stable", "metadata"):
        raise AssertionError(f"no {kind} flagd provider in this suite")
    options.update(context.options)
    context.domain = f"scenario-{context.scenario_number}"
    api.set_provider(FlagdProvider(**options), context.domain)
    context.client = api.get_client(context.domain)
    if wait:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while context.client.get_provider_status() != ProviderStatus.READY:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"provider not ready after {READY_TIMEOUT_S}s: "
                    f"{context.client.get_provider_status()}"
                )
            time.sleep(0.01)


@step(r"the connection is lost for (?P<seconds>\d+)s")
def connection_lost(context, seconds):
    global _flagpole_disturbed
    _flagpole_disturbed = True
    _control("lose", seconds)


@step(r"the flag was modified")
def flag_modified(context):
    _control("change")


@step(r"the client should be in (?P<state>\w+) state")
def client_state(context, state):
    expected = ProviderStatus[state.upper()]
    actual = context.client.get_provider_status()
    assert actual == expected, f"client state {actual}, expected {expected}"


# --- flag and context ---------------------------------------------------------------------


@step(r'an? (?P<kind>\w+)-flag with key "(?P<key>[^"]*)" and a default value "(?P<default>.*)"')
def flag(context, kind, key, default):
    context.flag = (kind, key, _cast(kind, default))


@step(
    r'a context containing a key "(?P<key>[^"]*)", with type "(?P<kind>[^"]*)" '
    r'and with value "(?P<value>.*)"'
)
def context_key(context, key, kind, value):
    context.attributes[key] = _cast(kind, value)


@step(r'a context containing a targeting key with value "(?P<value>.*)"')
def targeting_key(context, value):
    context.targeting_key = value


@step(
    r'a context containing a nested property with outer key "(?P<outer>[^"]*)" and inner key '
    r'"(?P<inner>[^"]*)", with value "(?P<value>.*)"'
)
def nested_key(context, outer, inner, value):
    context.attributes.setdefault(outer, {})[inner] = value


@step(r"the flag was evaluated with details")
def evaluate(context):
    kind, key, default = context.flag
    evaluation_context = EvaluationContext(context.targeting_key, dict(context.attributes))
    method = {
        "Boolean": context.client.get_boolean_details,
        "String": context.client.get_string_details,
        "Integer": context.client.get_integer_details,
        "Float": context.client.get_float_details,
        "Object": context.client.get_object_details,
    }[kind]
    context.details = method(key, default, evaluation_context)


# --- evaluation details -------------------------------------------------------------------


def _details(context):
    d = context.details
    reason = getattr(d.reason, "value", d.reason)
    code = getattr(d.error_code, "value", d.error_code)
    return (
        f"(value={d.value!r} variant={d.variant!r} reason={reason!r} "
        f"error_code={code!r} error_message={d.error_message!r})"
    )


@step(r'the resolved details value should be "(?P<value>.*)"')
def details_value(context, value):
    kind = context.flag[0]
    expected = _cast(kind, value)
    actual = context.details.value
    same = actual == expected and (kind != "Float" or isinstance(actual, float))
    assert same, f"value {actual!r}, expected {expected!r} {_details(context)}"


@step(r'the variant should be "(?P<variant>.*)"')
def details_variant(context, variant):
    actual = context.details.variant
    assert actual == variant, f"variant {actual!r}, expected {variant!r} {_details(context)}"


@step(r'the reason should be "(?P<reason>.*)"')
def details_reason(context, reason):
    actual = getattr(context.details.reason, "value", context.details.reason)
    assert actual == reason, f"reason {actual!r}, expected {reason!r} {_details(context)}"


@step(r'the error-code should be "(?P<code>.*)"')
def details_error_code(context, code):
    actual = getattr(context.details.error_code, "value", context.details.error_code)
    expected = code or None
    assert actual == expected, f"error code {actual!r}, expected {expected!r} {_details(context)}"


@step(r"the resolved metadata should contain")
def metadata_contains(context):
    metadata = dict(context.details.flag_metadata or {})
    for row in context.table:
        expected = _cast(row["metadata_type"], row["value"])
        actual = metadata.get(row["key"], "<absent>")
        assert actual == expected and type(actual) is type(expected), (
            f"metadata {row['key']!r} is {actual!r}, expected {expected!r}; all: {metadata!r}"
        )


@step(r"the resolved metadata is empty")
def metadata_empty(context):
    metadata = dict(context.details.flag_metadata or {})
    assert not metadata, f"metadata {metadata!r}, expected none"


# --- events -------------------------------------------------------------------------------


@step(r"a (?P<event>\w+) event handler")
def event_handler(context, event):
    # Bound to this scenario's lists, not to `context`: a handler of an earlier scenario's
    # client may still fire (its provider is replaced and shut down in the background) and
    # must not record into a later scenario.
    events, changed, log, started = (
        context.events,
        context.events_changed,
        context.event_log,
        context.scenario_started,
    )

    def record(details):
        with changed:
            log.append(
                f"{time.monotonic() - started:.3f}s {event}"
                + (f" {details.flags_changed}" if details.flags_changed else "")
            )
            events.append((event, details))
            changed.notify_all()

    context.client.add_handler(EVENTS[event], record)


def _await_event(context, event, timeout_s):
    """Waits for an event of that type and consumes it with every event recorded before it."""
    deadline = time.monotonic() + timeout_s
    with context.events_changed:
        while True:
            for index, (seen, details) in enumerate(context.events):
                if seen == event:
                    context.event_log.append(
                        f"{time.monotonic() - context.scenario_started:.3f}s consumed {event}"
                    )
                    del context.events[: index + 1]
                    context.last_event = details
                    return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                seen = [e for e, _ in context.events]
                raise AssertionError(f"no {event} event within {timeout_s}s (recorded: {seen})")
            context.events_changed.wait(remaining)


@step(r"a (?P<event>\w+) event was fired")
def event_fired(context, event):
    _await_event(context, event, EVENT_TIMEOUT_S)


@step(r"the (?P<event>\w+) event handler should have been executed")
def handler_executed(context, event):
    _await_event(context, event, EVENT_TIMEOUT_S)


@step(r"the (?P<event>\w+) event handler should have been executed within (?P<ms>\d+)ms")
def handler_executed_within(context, event, ms):
    _await_event(context, event, int(ms) / 1000)


@step(r"the flag should be part of the event payload")
def flag_in_event(context):
    key = context.flag[1]
    changed = context.last_event.flags_changed or []
    assert key in changed, f"{key!r} not among the changed flags {changed!r}"
