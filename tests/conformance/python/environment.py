"""behave hooks: per-scenario state, the skip rules and the result log.

Run by tests/conformance/run, which sets:
  CONFORMANCE_WORK     the suite's work dir (ports, control state, flag files)
  CONFORMANCE_MODE     rpc | in-process
  CONFORMANCE_CLIENT   the client name used by the skip rules (python)
  CONFORMANCE_SKIPS    tests/conformance/skips.json
  CONFORMANCE_RESULTS  JSON-lines file: one {"feature","scenario","status","detail"} per
                       scenario of the selected mode
"""

import itertools
import json
import os
import threading
import time

from openfeature import api
from openfeature.provider.no_op_provider import NoOpProvider

MODE_TAG = {"rpc": "rpc", "in-process": "in-process"}

# Numbers the scenarios (each gets its own OpenFeature domain). A module counter, because an
# attribute set on behave's context in before_scenario lives only as long as that scenario.
SCENARIO_NUMBERS = itertools.count(1)


def _skip_reason(name, tags, client, mode, rules):
    for rule in rules:
        if rule.get("clients") and client not in rule["clients"]:
            continue
        if rule.get("modes") and mode not in rule["modes"]:
            continue
        if any(tag.lstrip("@") in tags for tag in rule.get("tags", [])) or any(
            name == scenario or name.startswith(scenario + " -- ")
            for scenario in rule.get("scenarios", [])
        ):
            return rule["reason"]
    return None


def before_all(context):
    context.mode = os.environ["CONFORMANCE_MODE"]
    context.client_name = os.environ["CONFORMANCE_CLIENT"]
    with open(os.environ["CONFORMANCE_SKIPS"], encoding="utf-8") as f:
        context.skip_rules = json.load(f)["rules"]
    context.results = open(os.environ["CONFORMANCE_RESULTS"], "a", encoding="utf-8")


def after_all(context):
    api.shutdown()
    context.results.close()


def before_scenario(context, scenario):
    context.scenario_number = next(SCENARIO_NUMBERS)
    context.scenario_started = time.monotonic()
    context.options = {}
    context.attributes = {}
    context.targeting_key = None
    context.flag = None
    context.details = None
    context.client = None
    context.domain = None
    context.events = []
    context.event_log = []
    context.events_changed = threading.Condition()
    context.last_event = None
    context.skip_reason = _skip_reason(
        scenario.name,
        set(scenario.effective_tags),
        context.client_name,
        context.mode,
        context.skip_rules,
    )
    if context.skip_reason:
        scenario.skip(context.skip_reason)


def after_scenario(context, scenario):
    if context.domain is not None:
        # Replacing the provider shuts the old one down in the background (the SDK does that
        # asynchronously); clear_providers() would block ~0.2s per scenario on the shutdown.
        # Each scenario has its own domain, so nothing of this one leaks into the next.
        api.set_provider(NoOpProvider(), context.domain)
    if MODE_TAG[context.mode] not in scenario.effective_tags:
        return
    status = scenario.status.name
    detail = None
    if status == "skipped":
        detail = context.skip_reason or "skipped by the runner"
    elif status != "passed":
        failed = next((s for s in scenario.all_steps if s.status.name != "passed"), None)
        if failed is not None:
            message = (failed.error_message or failed.status.name).strip().splitlines()
            detail = f"{failed.keyword} {failed.name}: {message[-1] if message else ''}"
            if context.event_log:
                detail += f" [events: {', '.join(context.event_log)}]"
    context.results.write(
        json.dumps(
            {
                "feature": scenario.feature.name,
                "scenario": scenario.name,
                "line": f"{os.path.basename(scenario.filename)}:{scenario.line}",
                "status": status,
                "detail": detail,
                "seconds": round(time.monotonic() - context.scenario_started, 3),
            }
        )
        + "\n"
    )
    context.results.flush()
