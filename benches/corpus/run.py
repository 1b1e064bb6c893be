"""The corpus of scripts/bench through openfeature-flagd-core (the Python in-process evaluator).

    python run.py CORPUS.json SECONDS_PER_CLASS

Prints one JSON line: ns per evaluation per class and for all cases interleaved.
"""
import json
import sys
import time
from importlib.metadata import version

from openfeature.contrib.tools.flagd.core import FlagdCore
from openfeature.evaluation_context import EvaluationContext


def main():
    corpus_path, seconds = sys.argv[1], float(sys.argv[2]) if len(sys.argv) > 2 else 1.0
    with open(corpus_path) as f:
        corpus = json.load(f)
    core = FlagdCore()
    core.set_flags(corpus["document"])
    cases = []
    for c in corpus["cases"]:
        attrs = dict(c["context"])
        key = attrs.pop("targetingKey", None)
        resolve = core.resolve_boolean_value if c["type"] == "boolean" else core.resolve_string_value
        default = False if c["type"] == "boolean" else ""
        cases.append((c["class"], resolve, c["flag"], default, EvaluationContext(key, attrs)))

    def measure(items, budget):
        sink = 0
        start = time.perf_counter_ns()
        deadline = start + int(budget * 1e9)
        n = 0
        while True:
            for _, resolve, key, default, ctx in items:
                try:
                    if resolve(key, default, ctx).value:
                        sink += 1
                except Exception:
                    sink -= 1
            n += len(items)
            now = time.perf_counter_ns()
            if now >= deadline:
                return (now - start) / n

    result = {"evaluator": "python", "version": f"openfeature-flagd-core {version('openfeature-flagd-core')}",
              "classes": {}}
    measure(cases[:200], min(seconds, 0.5))
    for cls in corpus["classes"]:
        result["classes"][cls] = measure([c for c in cases if c[0] == cls], seconds)
    result["interleaved"] = measure(cases, seconds)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
