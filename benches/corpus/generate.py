#!/usr/bin/env python3
"""Writes the evaluator corpus of scripts/bench: one flag document and a list of evaluations.

    generate.py OUT.json [TESTBED_FLAGS.json]

Deterministic (fixed seed), so every evaluator and every run sees the same corpus. The flags
are generated per class; the flagd testbed's `testing-flags.json`, when given, is merged in as
background flags (more keys in the store, as in a real configuration). Each case is
(class, flag key, requested type, context); `missing` asks for keys that do not exist.
"""
import json
import random
import sys

CLASSES = ["static", "targeting", "fractional", "sem_ver", "ref", "large_context", "missing"]
PER_CLASS_FLAGS = 15
CASES_PER_CLASS = 700


def flags():
    out = {}
    evaluators = {
        "isEnterprise": {"==": [{"var": "plan"}, "enterprise"]},
        "isStaff": {"ends_with": [{"var": "email"}, "@example.com"]},
    }
    bool_variants = {"on": True, "off": False}
    for i in range(PER_CLASS_FLAGS):
        out[f"static-{i}"] = {"state": "ENABLED", "variants": bool_variants,
                              "defaultVariant": "on" if i % 2 else "off"}
        rules = [
            {"if": [{"in": ["@example.com", {"var": "email"}]}, "on", "off"]},
            {"if": [{"==": [{"var": "plan"}, "enterprise"]}, "on", "off"]},
            {"if": [{"ends_with": [{"var": "email"}, "@example.com"]}, "on", "off"]},
            {"if": [{"in": [{"var": "country"}, ["DE", "FR", "NL"]]}, "on", "off"]},
            {"if": [{"and": [{">=": [{"var": "age"}, 18]},
                             {"starts_with": [{"var": "targetingKey"}, "user-1"]}]}, "on", "off"]},
        ]
        out[f"targeting-{i}"] = {"state": "ENABLED", "variants": bool_variants,
                                 "defaultVariant": "off", "targeting": rules[i % len(rules)]}
        colours = ["red", "green", "blue", "yellow"]
        weights = [[25, 25, 25, 25], [50, 50, 0, 0], [10, 20, 30, 40], [70, 10, 10, 10]][i % 4]
        out[f"fractional-{i}"] = {
            "state": "ENABLED",
            "variants": {c: c for c in colours},
            "defaultVariant": "red",
            "targeting": {"fractional": [
                {"cat": [{"var": "$flagd.flagKey"}, {"var": "targetingKey"}]},
                *[[c, w] for c, w in zip(colours, weights)]]},
        }
        op = [">=", "<", "^", "~", "="][i % 5]
        out[f"sem_ver-{i}"] = {
            "state": "ENABLED", "variants": {"new": "new", "old": "old"}, "defaultVariant": "old",
            "targeting": {"if": [{"sem_ver": [{"var": "version"}, op, f"1.{i % 4}.0"]},
                                 "new", "old"]},
        }
        ref = ["isEnterprise", "isStaff"][i % 2]
        out[f"ref-{i}"] = {"state": "ENABLED", "variants": bool_variants, "defaultVariant": "off",
                           "targeting": {"if": [{"$ref": ref}, "on", "off"]}}
        out[f"large_context-{i}"] = {
            "state": "ENABLED", "variants": bool_variants, "defaultVariant": "off",
            "targeting": {"if": [{"==": [{"var": f"attr{(i * 7) % 100}"}, "value-3"]}, "on", "off"]},
        }
    return {"flags": out, "$evaluators": evaluators}


def context(rng, large):
    ctx = {
        "targetingKey": f"user-{rng.randrange(100000)}",
        "email": rng.choice(["jane@example.com", "joe@example.org", "ann@corp.example.com"]),
        "plan": rng.choice(["free", "pro", "enterprise"]),
        "country": rng.choice(["DE", "US", "FR", "JP"]),
        "version": f"1.{rng.randrange(5)}.{rng.randrange(10)}",
        "age": rng.randrange(12, 80),
    }
    if large:
        for k in range(100):
            ctx[f"attr{k}"] = f"value-{rng.randrange(5)}"
    return ctx


def main():
    out = sys.argv[1]
    rng = random.Random(16)
    doc = flags()
    if len(sys.argv) > 2:
        with open(sys.argv[2]) as f:
            background = json.load(f).get("flags", {})
        for key, flag in background.items():
            doc["flags"].setdefault(f"testbed-{key}", flag)
    cases = []
    for cls in CLASSES:
        for n in range(CASES_PER_CLASS):
            i = rng.randrange(PER_CLASS_FLAGS)
            kind = "string" if cls in ("fractional", "sem_ver") else "boolean"
            key = f"no-such-flag-{i}" if cls == "missing" else f"{cls}-{i}"
            cases.append({"class": cls, "flag": key, "type": kind,
                          "context": context(rng, cls == "large_context")})
    with open(out, "w") as f:
        json.dump({"classes": CLASSES, "document": json.dumps(doc), "cases": cases}, f)


if __name__ == "__main__":
    main()
