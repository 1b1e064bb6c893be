//! Operator-level tests of the targeting engine, including rules and expectations taken from
//! the flagd testbed (flag files and Gherkin tables).

use std::borrow::Cow;

use serde_json::{json, Value};

use super::*;

const FLAG: &str = "my-flag";
const NOW: i64 = 1_700_000_000;

fn ctx_of(ctx: &Value) -> Context {
    ctx.as_object().cloned().unwrap_or_default()
}

fn run_with(
    rule: &Value,
    ctx: &Value,
    flag: &str,
    v: FractionalVersion,
) -> Result<Value, EvalError> {
    let rule = Rule::compile(rule).unwrap_or_else(|e| panic!("compile {rule}: {e}"));
    let context = ctx_of(ctx);
    let env = Env {
        context: &context,
        flag_key: flag,
        timestamp: NOW,
        fractional: v,
    };
    rule.evaluate(&env).map(Cow::into_owned)
}

fn run(rule: Value, ctx: Value) -> Value {
    run_with(&rule, &ctx, FLAG, FractionalVersion::V2)
        .unwrap_or_else(|e| panic!("evaluate {rule}: {e}"))
}

fn run0(rule: Value) -> Value {
    run(rule, json!({}))
}

fn run_err(rule: Value, ctx: Value) -> EvalError {
    match run_with(&rule, &ctx, FLAG, FractionalVersion::V2) {
        Ok(v) => panic!("{rule} should fail, got {v}"),
        Err(e) => e,
    }
}

#[test]
fn rule_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Rule>();
}

// ---- literals and structure -------------------------------------------------------------

#[test]
fn scalars_and_literal_objects_are_returned_as_is() {
    assert_eq!(run0(json!("on")), json!("on"));
    assert_eq!(run0(json!(3)), json!(3));
    assert_eq!(run0(json!(null)), json!(null));
    assert_eq!(run0(json!({})), json!({}));
    // More than one key: data, not an operation (Go and JS engines both do this).
    assert_eq!(
        run0(json!({"a": {"var": "x"}, "b": 1})),
        json!({"a": {"var": "x"}, "b": 1})
    );
    assert_eq!(
        run(json!([{"var": "a"}, 1]), json!({"a": "x"})),
        json!(["x", 1])
    );
}

#[test]
fn literals_and_context_values_are_borrowed() {
    let rule =
        Rule::compile(&json!({"if": [{"var": "flag"}, {"var": "email"}, "static"]})).unwrap();
    let context = ctx_of(&json!({"flag": true, "email": "a@b.c"}));
    let env = Env {
        context: &context,
        flag_key: FLAG,
        timestamp: NOW,
        fractional: FractionalVersion::V2,
    };
    assert!(
        matches!(rule.evaluate(&env).unwrap(), Cow::Borrowed(Value::String(s)) if s == "a@b.c")
    );
    let context = ctx_of(&json!({"flag": false}));
    let env = Env {
        context: &context,
        ..env
    };
    assert!(
        matches!(rule.evaluate(&env).unwrap(), Cow::Borrowed(Value::String(s)) if s == "static")
    );
}

#[test]
fn unknown_operators_fail_only_when_evaluated() {
    // v3.9.1 looks operators up as it reaches them (operation.go).
    for rule in [
        json!({"invalid": ["this is not valid targeting"]}),
        json!({"if": [false, "a", {"nope": []}]}),
        json!({"fractionalEvaluation": ["x", ["a", 50], ["b", 50]]}),
        json!({"$ref": "someEvaluator"}),
        json!([1, {"bogus": 1}]),
        json!({"var": true}),
    ] {
        assert!(Rule::compile(&rule).is_ok(), "{rule} should compile");
        run_err(rule, json!({}));
    }
    assert_eq!(run0(json!({"if": [true, "a", {"nope": []}]})), json!("a"));
    let r = Rule::compile(&json!({"if": [true, "a", {"nope": []}]})).unwrap();
    assert_eq!(r.unknown_operator(), Some("nope"));
    let known = Rule::compile(&json!({"set": [{"a": 1, "c": 3}, "b", 2]})).unwrap();
    assert_eq!(known.unknown_operator(), None);
    assert_eq!(run0(json!({"or": [true, {"nope": []}]})), json!(true));
}

// ---- truthiness ---------------------------------------------------------------------------

#[test]
fn truthiness_through_double_bang_and_if() {
    let falsy = [
        json!(null),
        json!(false),
        json!(0),
        json!(""),
        json!([]),
        json!({}),
    ];
    for v in falsy {
        let ctx = json!({ "v": v });
        assert_eq!(
            run(json!({"!!": [{"var": "v"}]}), ctx.clone()),
            json!(false),
            "{v}"
        );
        assert_eq!(
            run(json!({"if": [{"var": "v"}, "t", "f"]}), ctx.clone()),
            json!("f"),
            "{v}"
        );
        assert_eq!(run(json!({"!": {"var": "v"}}), ctx), json!(true), "{v}");
    }
    let truthy = [
        json!(true),
        json!(1),
        json!(-0.5),
        json!("0"),
        json!("false"),
        json!([0]),
        json!({"a": 0}),
    ];
    for v in truthy {
        let ctx = json!({ "v": v });
        assert_eq!(
            run(json!({"!!": [{"var": "v"}]}), ctx.clone()),
            json!(true),
            "{v}"
        );
        assert_eq!(
            run(json!({"if": [{"var": "v"}, "t", "f"]}), ctx),
            json!("t"),
            "{v}"
        );
    }
    // The empty object is falsy only because the Go engine flagd uses says so.
    assert_eq!(run0(json!({"!!": [{}]})), json!(false));
    assert_eq!(run0(json!({"!": []})), json!(true));
    assert_eq!(run0(json!({"!!": []})), json!(false));
}

// ---- equality and comparison -------------------------------------------------------------

#[test]
fn loose_and_strict_equality() {
    let cases = [
        (json!(1), json!("1"), true, false),
        (json!(1), json!(1.0), true, true),
        (json!(0), json!(false), true, false),
        (json!(1), json!(true), true, false),
        (json!(""), json!(0), true, false),
        (json!(null), json!(null), true, true),
        (json!(null), json!(0), false, false),
        (json!(null), json!(""), false, false),
        (json!(null), json!(false), false, false),
        (json!("a"), json!("a"), true, true),
        (json!("a"), json!("A"), false, false),
        (json!(true), json!("true"), false, false),
        (json!(true), json!(true), true, true),
    ];
    for (a, b, loose, strict) in cases {
        let ctx = json!({"a": a, "b": b});
        let args = json!([{"var": "a"}, {"var": "b"}]);
        assert_eq!(
            run(json!({"==": args}), ctx.clone()),
            json!(loose),
            "{a} == {b}"
        );
        assert_eq!(
            run(json!({"!=": args}), ctx.clone()),
            json!(!loose),
            "{a} != {b}"
        );
        assert_eq!(
            run(json!({"===": args}), ctx.clone()),
            json!(strict),
            "{a} === {b}"
        );
        assert_eq!(
            run(json!({"!==": args}), ctx),
            json!(!strict),
            "{a} !== {b}"
        );
    }
}

#[test]
fn ordering_comparisons() {
    assert_eq!(run0(json!({"<": [1, 2]})), json!(true));
    assert_eq!(run0(json!({"<": [2, 2]})), json!(false));
    assert_eq!(run0(json!({"<=": [2, 2]})), json!(true));
    assert_eq!(run0(json!({">": [3, 2]})), json!(true));
    assert_eq!(run0(json!({">=": [2, 2]})), json!(true));
    assert_eq!(run0(json!({">=": [1, 2]})), json!(false));
    assert_eq!(run0(json!({"<": ["a", "b"]})), json!(true));
    assert_eq!(
        run0(json!({"<": ["10", "9"]})),
        json!(true),
        "strings compare as strings"
    );
    assert_eq!(
        run0(json!({"<": [9, "10"]})),
        json!(true),
        "mixed compare as numbers"
    );
    assert_eq!(run0(json!({"<": ["a", 1]})), json!(false));
    assert_eq!(run0(json!({">": ["a", 1]})), json!(false));
    assert_eq!(
        run0(json!({"<": [{"var": "missing"}, 1]})),
        json!(true),
        "null is 0"
    );
    assert_eq!(
        run0(json!({"<=": [null, 0]})),
        json!(false),
        "Go: null <= 0 is false"
    );
    assert_eq!(
        run0(json!({"<": [1]})),
        json!(false),
        "fewer than two arguments is false"
    );
    assert_eq!(run0(json!({"!=": [1]})), json!(true));
}

#[test]
fn three_argument_between() {
    assert_eq!(run0(json!({"<": [1, 2, 3]})), json!(true));
    assert_eq!(run0(json!({"<": [1, 1, 3]})), json!(false));
    assert_eq!(run0(json!({"<": [1, 4, 3]})), json!(false));
    assert_eq!(run0(json!({"<=": [1, 1, 3]})), json!(true));
    assert_eq!(run0(json!({"<=": [1, 3, 3]})), json!(true));
    assert_eq!(run0(json!({"<=": [1, 4, 3]})), json!(false));
    assert_eq!(
        run(json!({"<": [0, {"var": "x"}, 10]}), json!({"x": 5})),
        json!(true)
    );
    assert_eq!(
        run(json!({"<": [0, {"var": "x"}, 10]}), json!({"x": 10})),
        json!(false)
    );
    // Go also chains `>` and `>=` (descending).
    assert_eq!(run0(json!({">": [3, 2, 1]})), json!(true));
    assert_eq!(run0(json!({">=": [3, 3, 1]})), json!(true));
    assert_eq!(run0(json!({">": [3, 3, 1]})), json!(false));
}

// ---- var ------------------------------------------------------------------------------------

#[test]
fn var_paths_defaults_and_indices() {
    let ctx = json!({
        "email": "a@b.c",
        "user": {"name": "jack", "tags": ["x", "y"], "nil": null},
        "list": [10, {"k": "v"}],
        "1": "one",
    });
    assert_eq!(run(json!({"var": "email"}), ctx.clone()), json!("a@b.c"));
    assert_eq!(run(json!({"var": ["email"]}), ctx.clone()), json!("a@b.c"));
    assert_eq!(run(json!({"var": "user.name"}), ctx.clone()), json!("jack"));
    assert_eq!(run(json!({"var": "user.tags.1"}), ctx.clone()), json!("y"));
    assert_eq!(run(json!({"var": "list.0"}), ctx.clone()), json!(10));
    assert_eq!(run(json!({"var": "list.1.k"}), ctx.clone()), json!("v"));
    assert_eq!(run(json!({"var": "list.2"}), ctx.clone()), json!(null));
    assert_eq!(run(json!({"var": 1}), ctx.clone()), json!("one"));
    assert_eq!(run(json!({"var": "nope"}), ctx.clone()), json!(null));
    assert_eq!(
        run(json!({"var": "email.length"}), ctx.clone()),
        json!(null)
    );
    assert_eq!(
        run(json!({"var": "user.name.first"}), ctx.clone()),
        json!(null)
    );
    assert_eq!(
        run(json!({"var": ["nope", "dflt"]}), ctx.clone()),
        json!("dflt")
    );
    assert_eq!(
        run(json!({"var": ["user.nil", "dflt"]}), ctx.clone()),
        json!("dflt")
    );
    assert_eq!(
        run(json!({"var": ["email", "dflt"]}), ctx.clone()),
        json!("a@b.c")
    );
    assert_eq!(
        run(json!({"var": ["nope", {"cat": ["d", 1]}]}), ctx.clone()),
        json!("d1")
    );
    // Go honours a default only in the two-element form.
    assert_eq!(
        run(json!({"var": ["nope", "dflt", "extra"]}), ctx.clone()),
        json!(null)
    );
    // Computed paths.
    assert_eq!(
        run(json!({"var": {"cat": ["user.", "name"]}}), ctx.clone()),
        json!("jack")
    );
    assert_eq!(
        run(json!({"var": [{"cat": ["no", "pe"]}, 7]}), ctx.clone()),
        json!(7)
    );
    // Empty segments are skipped: a path of dots is the whole data (with `$flagd`).
    let whole = run(json!({"var": "."}), ctx.clone());
    assert_eq!(whole["$flagd"]["flagKey"], json!(FLAG));
    assert_eq!(whole["email"], json!("a@b.c"));
    assert_eq!(run(json!({"var": [".", 1]}), ctx.clone()), whole);
}

#[test]
fn var_flagd_properties_come_from_the_environment() {
    // A caller-supplied `$flagd` is ignored: flagd overwrites it.
    let ctx = json!({"$flagd": {"flagKey": "spoofed", "timestamp": 1}});
    assert_eq!(
        run(json!({"var": "$flagd.flagKey"}), ctx.clone()),
        json!(FLAG)
    );
    assert_eq!(
        run(json!({"var": "$flagd.timestamp"}), ctx.clone()),
        json!(NOW)
    );
    assert_eq!(
        run(json!({"var": "$flagd"}), ctx.clone()),
        json!({"flagKey": FLAG, "timestamp": NOW})
    );
    assert_eq!(
        run(json!({"var": "$flagd.other"}), ctx.clone()),
        json!(null)
    );
    assert_eq!(
        run(json!({"var": ["$flagd.other", 3]}), ctx.clone()),
        json!(3)
    );
    assert_eq!(
        run(json!({"var": {"cat": ["$flagd", ".flagKey"]}}), ctx.clone()),
        json!(FLAG)
    );
    assert_eq!(
        run(json!({"var": ""}), json!({"a": 1})),
        json!({"a": 1, "$flagd": {"flagKey": FLAG, "timestamp": NOW}})
    );
    assert_eq!(run(json!({"var": []}), json!({"a": 1}))["a"], json!(1));
    // timestamp is usable in arithmetic and comparisons.
    assert_eq!(
        run(json!({">": [{"var": "$flagd.timestamp"}, 1]}), json!({})),
        json!(true)
    );
}

#[test]
fn missing_and_missing_some() {
    let ctx = json!({"a": 1, "b": null, "c": {"d": 0}});
    assert_eq!(
        run(json!({"missing": ["a", "b", "c.d", "e"]}), ctx.clone()),
        json!(["b", "e"])
    );
    assert_eq!(run(json!({"missing": "e"}), ctx.clone()), json!(["e"]));
    assert_eq!(
        run(json!({"missing": {"merge": [["a"], ["z"]]}}), ctx.clone()),
        json!(["z"])
    );
    assert_eq!(
        run(json!({"missing_some": [1, ["a", "z"]]}), ctx.clone()),
        json!([])
    );
    assert_eq!(
        run(json!({"missing_some": [2, ["a", "z", "y"]]}), ctx.clone()),
        json!(["z", "y"])
    );
    assert_eq!(
        run(json!({"if": [{"missing": ["a"]}, "incomplete", "ok"]}), ctx),
        json!("ok")
    );
}

// ---- logic --------------------------------------------------------------------------------

#[test]
fn if_chains_and_laziness() {
    assert_eq!(run0(json!({"if": [true, "yes", "no"]})), json!("yes"));
    assert_eq!(run0(json!({"if": [false, "yes", "no"]})), json!("no"));
    assert_eq!(
        run0(json!({"if": [false, "a", false, "b", "c"]})),
        json!("c")
    );
    assert_eq!(
        run0(json!({"if": [false, "a", true, "b", "c"]})),
        json!("b")
    );
    assert_eq!(run0(json!({"if": [false, "a"]})), json!(null));
    assert_eq!(run0(json!({"if": [false, "a", false, "b"]})), json!(null));
    assert_eq!(run0(json!({"if": []})), json!(null));
    assert_eq!(run0(json!({"if": ["only"]})), json!("only"));
    // Branches not taken are not evaluated (this one would fail).
    assert_eq!(
        run0(json!({"if": [true, "ok", {"+": [null]}]})),
        json!("ok")
    );
    assert!(
        run_err(json!({"if": [false, "ok", {"+": [null]}]}), json!({}))
            .0
            .contains("number")
    );
    assert_eq!(run0(json!({"?:": [true, 1, 2]})), json!(1));
    assert_eq!(run0(json!({"?:": [0, 1, 2]})), json!(2));
}

#[test]
fn and_or_short_circuit_and_return_the_deciding_operand() {
    assert_eq!(run0(json!({"and": [true, "a", 3]})), json!(3));
    assert_eq!(run0(json!({"and": [true, "", 3]})), json!(""));
    assert_eq!(run0(json!({"and": [0, {"+": [null]}]})), json!(0));
    assert_eq!(run0(json!({"or": [false, 0, "x"]})), json!("x"));
    assert_eq!(run0(json!({"or": [false, 0, ""]})), json!(""));
    assert_eq!(
        run0(json!({"or": ["first", {"+": [null]}]})),
        json!("first")
    );
    assert_eq!(run0(json!({"and": []})), json!(null));
    assert_eq!(run0(json!({"or": []})), json!(null));
}

// ---- arithmetic ---------------------------------------------------------------------------

#[test]
fn arithmetic() {
    assert_eq!(run0(json!({"+": [1, 2, "3"]})), json!(6));
    assert_eq!(
        run0(json!({"+": ["abc", 1]})),
        json!(1),
        "unparsable strings are 0 in Go"
    );
    assert_eq!(run0(json!({"+": []})), json!(0));
    assert_eq!(run0(json!({"+": "3.5"})), json!(3.5));
    assert_eq!(run0(json!({"-": [10, 4, 1]})), json!(5));
    assert_eq!(run0(json!({"-": [2]})), json!(-2));
    run_err(json!({"-": "2"}), json!({}));
    assert_eq!(run0(json!({"*": [2, "3", 0.5]})), json!(3));
    assert_eq!(run0(json!({"/": [10, 4]})), json!(2.5));
    assert_eq!(run0(json!({"%": [7, 3]})), json!(1));
    assert_eq!(run0(json!({"%": [-7, 3]})), json!(-1));
    assert_eq!(run0(json!({"%": [7.5, 2]})), json!(1.5));
    assert_eq!(run0(json!({"abs": -4})), json!(4));
    assert_eq!(run0(json!({"max": [1, 3, "2"]})), json!(3));
    assert_eq!(run0(json!({"min": [1, -3, 2]})), json!(-3));
    assert_eq!(run0(json!({"max": []})), json!(null));
    assert_eq!(run0(json!({"+": [0.1, 0.2]})), json!(0.30000000000000004));
    // Division by zero is fine inside comparisons but is not a JSON result.
    assert_eq!(run0(json!({">": [{"/": [1, 0]}, 1e308]})), json!(true));
    assert!(run_err(json!({"/": [1, 0]}), json!({}))
        .0
        .contains("not a JSON number"));
    // Non-numbers other than strings make the Go engine panic (PARSE_ERROR in flagd).
    run_err(json!({"+": [1, null]}), json!({}));
    run_err(json!({"*": [1, true]}), json!({}));
    run_err(json!({"-": [{"var": "missing"}]}), json!({}));
}

// ---- strings and arrays -----------------------------------------------------------------

#[test]
fn in_on_strings_and_arrays() {
    let ctx = json!({"email": "jack@example.com", "n": 3, "tier": "gold"});
    assert_eq!(
        run(
            json!({"in": ["@example.com", {"var": "email"}]}),
            ctx.clone()
        ),
        json!(true)
    );
    assert_eq!(
        run(json!({"in": ["@other.com", {"var": "email"}]}), ctx.clone()),
        json!(false)
    );
    assert_eq!(
        run(
            json!({"in": [{"var": "tier"}, ["silver", "gold"]]}),
            ctx.clone()
        ),
        json!(true)
    );
    assert_eq!(
        run(json!({"in": [{"var": "tier"}, ["silver"]]}), ctx.clone()),
        json!(false)
    );
    assert_eq!(
        run(
            json!({"in": [{"var": "tier"}, ["silver", {"cat": ["go", "ld"]}]]}),
            ctx.clone()
        ),
        json!(true)
    );
    assert_eq!(
        run(json!({"in": [{"var": "n"}, [1, "3"]]}), ctx.clone()),
        json!(true)
    );
    assert_eq!(
        run(json!({"in": ["3", [1, 3]]}), ctx.clone()),
        json!(false),
        "no coercion for strings"
    );
    assert_eq!(
        run(json!({"in": [{"var": "missing"}, [null]]}), ctx.clone()),
        json!(true),
        "Go compares null with null"
    );
    assert_eq!(
        run(json!({"in": ["a", {"var": "missing"}]}), ctx.clone()),
        json!(false)
    );
    assert_eq!(run(json!({"in": ["a"]}), ctx.clone()), json!(false));
    assert_eq!(
        run(json!({"in": [true, [false, true]]}), ctx.clone()),
        json!(true)
    );
    // Go extension: nested pairs are inclusive numeric ranges.
    assert_eq!(
        run(json!({"in": [{"var": "n"}, [[1, 5]]]}), ctx.clone()),
        json!(true)
    );
    assert_eq!(
        run(json!({"in": [{"var": "n"}, [[4, 5]]]}), ctx.clone()),
        json!(false)
    );
    // A non-string needle in a string haystack makes Go panic.
    run_err(json!({"in": [1, "123"]}), ctx);
}

#[test]
fn cat_and_substr() {
    assert_eq!(
        run0(json!({"cat": ["a", 1, 2.5, null, "b"]})),
        json!("a12.5b")
    );
    assert_eq!(
        run0(json!({"cat": [" padded ", "x "]})),
        json!("padded x"),
        "Go trims"
    );
    assert_eq!(run0(json!({"cat": "solo"})), json!("solo"));
    assert_eq!(run0(json!({"cat": []})), json!(""));
    assert_eq!(
        run0(json!({"cat": [1e21]})),
        json!("1000000000000000000000")
    );
    run_err(json!({"cat": ["a", true]}), json!({}));
    assert_eq!(run0(json!({"substr": ["jsonlogic", 4]})), json!("logic"));
    assert_eq!(run0(json!({"substr": ["jsonlogic", -5]})), json!("logic"));
    assert_eq!(run0(json!({"substr": ["jsonlogic", 0, 1]})), json!("j"));
    assert_eq!(run0(json!({"substr": ["jsonlogic", 1, -5]})), json!("son"));
    assert_eq!(
        run0(json!({"substr": ["jsonlogic", -20]})),
        json!("jsonlogic")
    );
    assert_eq!(
        run0(json!({"substr": ["jsonlogic", 4, 100]})),
        json!("logic")
    );
    assert_eq!(
        run0(json!({"substr": ["héllo wörld", 1, 4]})),
        json!("éllo")
    );
    assert_eq!(run0(json!({"substr": [12345, 1, 2]})), json!("23"));
    run_err(json!({"substr": ["abc", 2, -2]}), json!({}));
}

#[test]
fn merge_map_filter_reduce() {
    let ctx = json!({"nums": [1, 2, 3, 4], "people": [{"age": 20}, {"age": 40}], "e": []});
    assert_eq!(
        run0(json!({"merge": [[1, 2], 3, [[4]], null]})),
        json!([1, 2, 3, [4], null])
    );
    assert_eq!(
        run(
            json!({"map": [{"var": "nums"}, {"*": [{"var": ""}, 2]}]}),
            ctx.clone()
        ),
        json!([2, 4, 6, 8])
    );
    assert_eq!(
        run(
            json!({"map": [{"var": "people"}, {"var": "age"}]}),
            ctx.clone()
        ),
        json!([20, 40])
    );
    assert_eq!(
        run(
            json!({"map": [{"var": "missing"}, {"var": ""}]}),
            ctx.clone()
        ),
        json!([])
    );
    assert_eq!(
        run(
            json!({"filter": [{"var": "nums"}, {">": [{"var": ""}, 2]}]}),
            ctx.clone()
        ),
        json!([3, 4])
    );
    assert_eq!(
        run(
            json!({"reduce": [{"var": "nums"}, {"+": [{"var": "current"}, {"var": "accumulator"}]}, 0]}),
            ctx.clone()
        ),
        json!(10)
    );
    assert_eq!(
        run(
            json!({"reduce": [{"var": "nums"}, {"cat": [{"var": "accumulator"}, {"var": "current"}]}, ""]}),
            ctx.clone()
        ),
        json!("1234")
    );
    assert_eq!(
        run(json!({"reduce": [{"var": "missing"}, 1, 5]}), ctx.clone()),
        json!(0)
    );
    run_err(json!({"reduce": [{"var": "nums"}, 1, null]}), ctx.clone());
    assert_eq!(
        run(
            json!({"all": [{"var": "nums"}, {">": [{"var": ""}, 0]}]}),
            ctx.clone()
        ),
        json!(true)
    );
    assert_eq!(
        run(
            json!({"all": [{"var": "nums"}, {">": [{"var": ""}, 1]}]}),
            ctx.clone()
        ),
        json!(false)
    );
    assert_eq!(
        run(json!({"all": [{"var": "e"}, true]}), ctx.clone()),
        json!(false)
    );
    assert_eq!(
        run(
            json!({"some": [{"var": "people"}, {">": [{"var": "age"}, 30]}]}),
            ctx.clone()
        ),
        json!(true)
    );
    assert_eq!(
        run(json!({"some": [{"var": "e"}, true]}), ctx.clone()),
        json!(false)
    );
    assert_eq!(
        run(
            json!({"none": [{"var": "nums"}, {">": [{"var": ""}, 4]}]}),
            ctx.clone()
        ),
        json!(true)
    );
    assert_eq!(
        run(json!({"none": [{"var": "e"}, true]}), ctx.clone()),
        json!(true)
    );
    assert_eq!(
        run(json!({"all": [[1, 2], {"var": ""}]}), ctx.clone()),
        json!(true)
    );
    run_err(json!({"map": [{"var": "people.0"}, 1]}), ctx);
}

// ---- flagd custom operators ----------------------------------------------------------------

fn semver(a: Value, op: &str, b: Value) -> Value {
    run(
        json!({"sem_ver": [{"var": "a"}, op, {"var": "b"}]}),
        json!({"a": a, "b": b}),
    )
}

#[test]
fn sem_ver_operators() {
    assert_eq!(semver(json!("1.2.3"), "=", json!("1.2.3")), json!(true));
    assert_eq!(semver(json!("1.2.3"), "!=", json!("1.2.4")), json!(true));
    assert_eq!(semver(json!("1.2.3"), "<", json!("1.10.0")), json!(true));
    assert_eq!(semver(json!("1.2.3"), "<=", json!("1.2.3")), json!(true));
    assert_eq!(semver(json!("2.0.0"), ">", json!("1.99.99")), json!(true));
    assert_eq!(semver(json!("2.0.0"), ">=", json!("2.0.1")), json!(false));
    // Prereleases sort before the release and among themselves per semver.
    assert_eq!(
        semver(json!("2.0.0-alpha"), "<", json!("2.0.0")),
        json!(true)
    );
    assert_eq!(
        semver(json!("1.0.0-alpha.1"), "<", json!("1.0.0-alpha.beta")),
        json!(true)
    );
    assert_eq!(
        semver(json!("1.0.0-2"), "<", json!("1.0.0-10")),
        json!(true)
    );
    // Build metadata is ignored.
    assert_eq!(
        semver(json!("1.0.0+other"), "=", json!("1.0.0+build")),
        json!(true)
    );
    // Short forms and numbers.
    assert_eq!(semver(json!("1.0"), "=", json!("1.0.0")), json!(true));
    assert_eq!(semver(json!("1"), "^", json!("1.9.3")), json!(true));
    assert_eq!(semver(json!(1), "^", json!("1")), json!(true));
    assert_eq!(semver(json!(1.0), "^", json!("1")), json!(true));
    assert_eq!(semver(json!(1.2), ">", json!("1.1")), json!(true));
    assert_eq!(semver(json!(1.1), ">", json!("1.1")), json!(false));
    assert_eq!(semver(json!("v1.0.0"), "=", json!("V1.0.0")), json!(true));
    // ~ is same major.minor; ^ is same major (not npm caret: ^0.1.0 matches 0.9.0).
    assert_eq!(semver(json!("3.0.1"), "~", json!("3.0.0")), json!(true));
    assert_eq!(semver(json!("3.1.0"), "~", json!("3.0.0")), json!(false));
    assert_eq!(semver(json!("3.1.0"), "^", json!("3.0.0")), json!(true));
    assert_eq!(semver(json!("0.9.0"), "^", json!("0.1.0")), json!(true));
    assert_eq!(semver(json!("4.0.0"), "^", json!("3.0.0")), json!(false));
    // Invalid input answers null.
    assert_eq!(semver(json!("2.0.0.0"), "=", json!("2.0.0")), json!(null));
    assert_eq!(
        semver(json!("not-a-version"), "=", json!("1.0.0")),
        json!(null)
    );
    assert_eq!(semver(json!("1.0.0"), "===", json!("1.0.0")), json!(null));
    assert_eq!(semver(json!(true), "=", json!("1.0.0")), json!(null));
    assert_eq!(semver(json!(null), "=", json!("1.0.0")), json!(null));
    assert_eq!(run0(json!({"sem_ver": ["1.0.0", "="]})), json!(null));
    assert_eq!(
        run0(json!({"sem_ver": ["1.0.0", "=", "1.0.0", "x"]})),
        json!(null)
    );
}

#[test]
fn starts_with_and_ends_with() {
    let ctx = json!({"id": "abcxyz", "num": 123});
    assert_eq!(
        run(json!({"starts_with": [{"var": "id"}, "abc"]}), ctx.clone()),
        json!(true)
    );
    assert_eq!(
        run(json!({"starts_with": [{"var": "id"}, "ABC"]}), ctx.clone()),
        json!(false)
    );
    assert_eq!(
        run(json!({"ends_with": [{"var": "id"}, "xyz"]}), ctx.clone()),
        json!(true)
    );
    assert_eq!(
        run(json!({"ends_with": [{"var": "id"}, "abc"]}), ctx.clone()),
        json!(false)
    );
    assert_eq!(
        run(json!({"ends_with": [{"var": "num"}, "3"]}), ctx.clone()),
        json!(null)
    );
    assert_eq!(
        run(json!({"ends_with": [{"var": "id"}, 3]}), ctx.clone()),
        json!(null)
    );
    assert_eq!(
        run(json!({"starts_with": ["abc"]}), ctx.clone()),
        json!(null)
    );
    assert_eq!(
        run(json!({"starts_with": ["abc", "a", "b"]}), ctx.clone()),
        json!(null)
    );
    assert_eq!(
        run(json!({"starts_with": [{"var": "missing"}, "a"]}), ctx),
        json!(null)
    );
}

fn frac(rule: Value, ctx: Value, v: FractionalVersion) -> Value {
    run_with(&rule, &ctx, FLAG, v).unwrap()
}

#[test]
fn fractional_hash_edge_vectors() {
    let rule = json!({"fractional": [{"var": "targetingKey"}, ["lower", 50], ["upper", 50]]});
    for (key, want) in [
        ("ejOoVL", "lower"),
        ("bY9fO-", "lower"),
        ("SI7p-", "lower"),
        ("6LvT0", "upper"),
        ("ceQdGm", "upper"),
    ] {
        assert_eq!(
            frac(
                rule.clone(),
                json!({"targetingKey": key}),
                FractionalVersion::V2
            ),
            json!(want),
            "{key}"
        );
    }
}

#[test]
fn fractional_weights() {
    let v2 = FractionalVersion::V2;
    let tk = json!({"targetingKey": "any-user"});
    let with = |dists: Value| {
        let mut args = vec![json!("seed")];
        args.extend(dists.as_array().unwrap().iter().cloned());
        json!({"fractional": args})
    };
    // Single distribution always wins.
    assert_eq!(
        frac(with(json!([["only", 1]])), tk.clone(), v2),
        json!("only")
    );
    // Absent or null weight is 1.
    assert_eq!(
        frac(with(json!([["a"], ["b", 0]])), tk.clone(), v2),
        json!("a")
    );
    assert_eq!(
        frac(with(json!([["a", null], ["b", 0]])), tk.clone(), v2),
        json!("a")
    );
    // Zero weight never wins; negative is clamped to zero.
    assert_eq!(
        frac(with(json!([["a", 0], ["b", 5]])), tk.clone(), v2),
        json!("b")
    );
    assert_eq!(
        frac(with(json!([["a", -50], ["b", 100]])), tk.clone(), v2),
        json!("b")
    );
    // All zero → null.
    assert_eq!(
        frac(with(json!([["a", 0], ["b", 0]])), tk.clone(), v2),
        json!(null)
    );
    // Non-integer, non-number, too large, sum overflow → null.
    assert_eq!(
        frac(with(json!([["a", 1.5], ["b", 1]])), tk.clone(), v2),
        json!(null)
    );
    assert_eq!(
        frac(with(json!([["a", "1"], ["b", 1]])), tk.clone(), v2),
        json!(null)
    );
    assert_eq!(
        frac(with(json!([["a", 2147483648u64]])), tk.clone(), v2),
        json!(null)
    );
    assert_eq!(
        frac(with(json!([["a", 2147483647u64]])), tk.clone(), v2),
        json!("a")
    );
    assert_eq!(
        frac(
            with(json!([["a", 2147483647u64], ["b", 1]])),
            tk.clone(),
            v2
        ),
        json!(null)
    );
    assert_eq!(
        frac(with(json!([["a", 1.0], ["b", 0]])), tk.clone(), v2),
        json!("a")
    );
    // Malformed distributions → null.
    assert_eq!(
        frac(with(json!([[], ["b", 1]])), tk.clone(), v2),
        json!(null)
    );
    assert_eq!(
        frac(with(json!([["a", 1], "b"])), tk.clone(), v2),
        json!(null)
    );
    assert_eq!(
        frac(with(json!([[["nested"], 1]])), tk.clone(), v2),
        json!(null)
    );
    assert_eq!(frac(with(json!([])), tk.clone(), v2), json!(null));
    assert_eq!(frac(json!({"fractional": []}), tk.clone(), v2), json!(null));
    // Non-string variants are returned as they are.
    assert_eq!(frac(with(json!([[true, 1]])), tk.clone(), v2), json!(true));
    assert_eq!(frac(with(json!([[7, 1]])), tk.clone(), v2), json!(7));
    assert_eq!(frac(with(json!([[null, 1]])), tk, v2), json!(null));
}

#[test]
fn fractional_targeting_keys() {
    let rule = json!({"fractional": [["heads"], ["tails", 1]]});
    for v in [FractionalVersion::V2, FractionalVersion::V3] {
        for ctx in [
            json!({}),
            json!({"targetingKey": null}),
            json!({"targetingKey": ""}),
            json!({"targetingKey": 12345}),
            json!({"targetingKey": true}),
        ] {
            assert_eq!(
                frac(rule.clone(), ctx.clone(), v),
                json!(null),
                "{ctx} {v:?}"
            );
        }
        assert_ne!(
            frac(rule.clone(), json!({"targetingKey": "x"}), v),
            json!(null)
        );
    }
    // v2: a null bucketing value is dropped and the targeting key is used.
    let null_seed = json!({"fractional": [{"var": "missing"}, ["one", 50], ["two", 50]]});
    assert_eq!(
        frac(null_seed.clone(), json!({}), FractionalVersion::V2),
        json!(null)
    );
    assert_ne!(
        frac(
            null_seed.clone(),
            json!({"targetingKey": "u"}),
            FractionalVersion::V2
        ),
        json!(null)
    );
    // v3: a null bucketing value is an error (null) even with a targeting key.
    assert_eq!(
        frac(
            null_seed,
            json!({"targetingKey": "u"}),
            FractionalVersion::V3
        ),
        json!(null)
    );
    // v2: a non-string bucketing value is kept as a (bad) distribution → null.
    let num_seed = json!({"fractional": [{"var": "n"}, ["one", 50], ["two", 50]]});
    assert_eq!(
        frac(
            num_seed.clone(),
            json!({"n": 5, "targetingKey": "u"}),
            FractionalVersion::V2
        ),
        json!(null)
    );
    // v3: numbers are valid bucketing values.
    assert_ne!(
        frac(num_seed, json!({"n": 5}), FractionalVersion::V3),
        json!(null)
    );
}

#[test]
fn fractional_v2_hashes_flag_key_then_targeting_key() {
    // The shorthand hashes flagKey+targetingKey: same as an explicit `cat` seed.
    let short = json!({"fractional": [["a", 1], ["b", 1], ["c", 1], ["d", 1]]});
    let explicit = json!({"fractional": [
        {"cat": [{"var": "$flagd.flagKey"}, {"var": "targetingKey"}]},
        ["a", 1], ["b", 1], ["c", 1], ["d", 1]
    ]});
    for i in 0..50 {
        let ctx = json!({"targetingKey": format!("user-{i}")});
        assert_eq!(
            frac(short.clone(), ctx.clone(), FractionalVersion::V2),
            frac(explicit.clone(), ctx, FractionalVersion::V2)
        );
    }
}

// ---- limits -------------------------------------------------------------------------------

/// `{key: [inner]}` (or `{key: inner, "b": 1}` for data) built without `json!`, which would
/// serialize (recursively) the interpolated value.
fn wrap(key: &str, inner: Value, as_data: bool) -> Value {
    let mut m = serde_json::Map::new();
    if as_data {
        m.insert(key.into(), inner);
        m.insert("b".into(), Value::from(1));
    } else {
        m.insert(key.into(), Value::Array(vec![inner]));
    }
    Value::Object(m)
}

#[test]
fn deep_nesting_is_refused_without_overflowing_the_stack() {
    // serde_json refuses to parse beyond 128 levels, so build the value by hand.
    let mut v = Value::Bool(true);
    for _ in 0..10_000 {
        v = wrap("!", v, false);
    }
    let err = Rule::compile(&v).unwrap_err();
    assert!(err.0.contains("nested deeper"), "{err}");
    // Dropping a 10 000-deep serde_json value recurses; leak it instead.
    std::mem::forget(v);

    let mut v = Value::from(1);
    for _ in 0..10_000 {
        v = wrap("a", v, true);
    }
    assert!(
        Rule::compile(&v).is_err(),
        "deep literal data is refused too"
    );
    std::mem::forget(v);

    // Just inside the limit still compiles (each level is an object and an array).
    let mut v = Value::Bool(true);
    for _ in 0..(MAX_DEPTH / 2) {
        v = wrap("!", v, false);
    }
    assert!(Rule::compile(&v).is_ok());
    assert_eq!(run0(v), json!(true));
}

#[test]
fn node_count_is_capped() {
    let big: Vec<Value> = (0..MAX_NODES + 1).map(|_| json!({"var": "x"})).collect();
    let err = Rule::compile(&json!({"cat": big})).unwrap_err();
    assert!(err.0.contains("nodes"), "{err}");
}

#[test]
fn evaluation_work_is_bounded() {
    let huge: Vec<Value> = (0..2_000_000).map(|i| json!(i)).collect();
    let ctx = json!({ "huge": huge });
    let sum = json!({"reduce": [{"var": "huge"}, {"+": [{"var": "current"}, {"var": "accumulator"}]}, 0]});
    assert!(run_err(sum, ctx.clone()).0.contains("budget"));
    let nested = json!({"map": [{"var": "huge"}, {"map": [{"var": "huge"}, 1]}]});
    assert!(run_err(nested, ctx).0.contains("budget"));
    // Copying large context values is charged by size.
    let big: Vec<Value> = (0..1000).map(|_| Value::String("x".repeat(4096))).collect();
    let copies: Vec<Value> = (0..16).map(|_| json!({"var": "big"})).collect();
    let err = run_err(json!({"merge": copies}), json!({ "big": big }));
    assert!(err.0.contains("budget"), "{err}");
    // Small loops are fine.
    let small =
        json!({"reduce": [[1, 2, 3], {"+": [{"var": "current"}, {"var": "accumulator"}]}, 0]});
    assert_eq!(run0(small), json!(6));
}

// ---- allocation behaviour ---------------------------------------------------------------

mod alloc_count {
    //! Counts heap allocations made by the current thread (the test harness runs tests on
    //! separate threads, so counts do not mix).
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    pub(super) struct Counting;

    thread_local! {
        static COUNT: Cell<usize> = const { Cell::new(0) };
    }

    // The one unsafe block of the crate: counting allocations to prove the static path
    // allocates nothing needs a global allocator.
    #[allow(unsafe_code)]
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            let _ = COUNT.try_with(|c| c.set(c.get() + 1));
            // SAFETY: forwarded unchanged to the system allocator.
            unsafe { System.alloc(layout) }
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            // SAFETY: forwarded unchanged to the system allocator.
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    #[global_allocator]
    static GLOBAL: Counting = Counting;

    pub(super) fn count<R>(f: impl FnOnce() -> R) -> (R, usize) {
        let before = COUNT.with(Cell::get);
        let r = f();
        (r, COUNT.with(Cell::get) - before)
    }
}

#[test]
fn typical_targeting_does_not_allocate() {
    // The counter itself works.
    let (_, n) = alloc_count::count(|| std::hint::black_box(vec![1u8; 8]));
    assert!(n >= 1);

    let rule = Rule::compile(&json!({"if": [
        {"in": [{"var": "email"}, ["a@example.com", "b@example.com", "jack@example.com"]]},
        "on",
        {"if": [{"ends_with": [{"var": "email"}, "@example.com"]}, "maybe", "off"]}
    ]}))
    .unwrap();
    let context = ctx_of(&json!({"email": "jack@example.com", "targetingKey": "u1"}));
    let env = Env {
        context: &context,
        flag_key: FLAG,
        timestamp: NOW,
        fractional: FractionalVersion::V2,
    };
    let (r, allocs) =
        alloc_count::count(|| rule.evaluate(&env).map(|c| matches!(c, Cow::Borrowed(_))));
    assert!(r.unwrap(), "result should be borrowed");
    assert_eq!(allocs, 0, "targeting allocated");

    let frac = Rule::compile(&json!({"fractional": [["a", 25], ["b", 25], ["c", 25], ["d", 25]]}))
        .unwrap();
    for version in [FractionalVersion::V2, FractionalVersion::V3] {
        let env = Env {
            fractional: version,
            ..env
        };
        let (r, allocs) = alloc_count::count(|| frac.evaluate(&env).is_ok());
        assert!(r);
        assert_eq!(allocs, 0, "fractional {version:?} allocated");
    }

    let semver = Rule::compile(&json!({"sem_ver": [{"var": "v"}, ">=", "1.2.0"]})).unwrap();
    let context = ctx_of(&json!({"v": "1.10.3"}));
    let env = Env {
        context: &context,
        ..env
    };
    let (r, allocs) = alloc_count::count(|| semver.evaluate(&env).map(Cow::into_owned));
    assert_eq!(r.unwrap(), json!(true));
    assert_eq!(allocs, 0, "sem_ver allocated");
}

// ---- the flagd testbed -------------------------------------------------------------------

mod testbed {
    use super::*;
    use std::path::PathBuf;

    fn dir() -> PathBuf {
        std::env::var_os("FLAGD_TESTBED_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/../shared/flagd-testbed"
                ))
            })
    }

    fn load(file: &str) -> Value {
        let path = dir().join(file);
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        serde_json::from_str(&text).unwrap()
    }

    /// The targeting rule of a flag in a testbed file.
    fn rule(file: &str, flag: &str) -> Value {
        load(file)["flags"][flag]["targeting"].clone()
    }

    fn eval_flag(file: &str, flag: &str, ctx: Value, v: FractionalVersion) -> Value {
        run_with(&rule(file, flag), &ctx, flag, v).unwrap_or_else(|e| panic!("{flag}: {e}"))
    }

    const CUSTOM: &str = "flags/custom-ops.json";
    const EDGE: &str = "flags/edge-case-flags.json";
    const TESTING: &str = "flags/testing-flags.json";

    #[test]
    fn every_testbed_rule_compiles_and_the_broken_ones_fail() {
        let files = [
            "flags/changing-flag.json",
            CUSTOM,
            "flags/disabled-flags.json",
            EDGE,
            "flags/metadata-flags.json",
            "flags/selector-flag-combined-metadata.json",
            "flags/selector-flags.json",
            TESTING,
            "flags/zero-flags.json",
            "evaluator/flags/testkit-flags.json",
        ];
        let mut compiled = 0;
        for file in files {
            let doc = load(file);
            for (key, flag) in doc["flags"].as_object().unwrap() {
                let Some(t) = flag.get("targeting") else {
                    continue;
                };
                let r = Rule::compile(t);
                if key == "error-targeting-flag" || t.to_string().contains("$ref") {
                    // Unknown operators (and unresolved `$ref`s) fail when evaluated.
                    assert!(r.is_ok(), "{file}/{key}: {:?}", r.err());
                    run_err(t.clone(), json!({}));
                } else {
                    assert!(r.is_ok(), "{file}/{key}: {:?}", r.err());
                    compiled += 1;
                }
            }
        }
        assert!(compiled > 40, "only {compiled} rules found");
    }

    #[test]
    fn fractional_v2_and_v3_tables() {
        use FractionalVersion::{V2, V3};
        let name = |n: &str| json!({"user": {"name": n}});
        for (n, want) in [
            ("jack", "hearts"),
            ("queen", "spades"),
            ("ten", "clubs"),
            ("nine", "diamonds"),
            ("3", "clubs"),
        ] {
            assert_eq!(
                eval_flag(CUSTOM, "fractional-flag", name(n), V2),
                json!(want),
                "v2 {n}"
            );
        }
        for (n, want) in [
            ("jack", "diamonds"),
            ("queen", "diamonds"),
            ("ten", "clubs"),
            ("nine", "clubs"),
            ("3", "spades"),
        ] {
            assert_eq!(
                eval_flag(CUSTOM, "fractional-flag", name(n), V3),
                json!(want),
                "v3 {n}"
            );
        }
        let tk = |k: &str| json!({"targetingKey": k});
        for (k, v2, v3) in [
            ("jon@company.com", "heads", "tails"),
            ("jane@company.com", "tails", "tails"),
        ] {
            assert_eq!(
                eval_flag(CUSTOM, "fractional-flag-shorthand", tk(k), V2),
                json!(v2),
                "v2 {k}"
            );
            assert_eq!(
                eval_flag(CUSTOM, "fractional-flag-shorthand", tk(k), V3),
                json!(v3),
                "v3 {k}"
            );
        }
        for (k, v3) in [
            ("user-1", "heads"),
            ("user-2", "tails"),
            ("user-3", "heads"),
        ] {
            assert_eq!(
                eval_flag(CUSTOM, "fractional-flag-shorthand", tk(k), V3),
                json!(v3),
                "v3 {k}"
            );
        }
        for (n, a2, a3) in [
            ("seven", "hearts", "hearts"),
            ("eight", "diamonds", "hearts"),
            ("nine", "clubs", "diamonds"),
            ("two", "spades", "diamonds"),
        ] {
            assert_eq!(
                eval_flag(CUSTOM, "fractional-flag-A-shared-seed", name(n), V2),
                json!(a2),
                "A v2 {n}"
            );
            assert_eq!(
                eval_flag(CUSTOM, "fractional-flag-A-shared-seed", name(n), V3),
                json!(a3),
                "A v3 {n}"
            );
            // The B flag shares the seed; its variant keys are the same.
            assert_eq!(
                eval_flag(CUSTOM, "fractional-flag-B-shared-seed", name(n), V2),
                json!(a2),
                "B v2 {n}"
            );
            assert_eq!(
                eval_flag(CUSTOM, "fractional-flag-B-shared-seed", name(n), V3),
                json!(a3),
                "B v3 {n}"
            );
        }
        for v in [V2, V3] {
            assert_eq!(
                eval_flag(
                    CUSTOM,
                    "fractional-single-entry-flag",
                    tk("some-targeting-key"),
                    v
                ),
                json!("single")
            );
            assert_eq!(
                eval_flag(
                    CUSTOM,
                    "fractional-as-condition-flag",
                    tk("some-targeting-key"),
                    v
                ),
                json!("big")
            );
            assert_eq!(
                eval_flag(
                    CUSTOM,
                    "fractional-as-condition-false-flag",
                    tk("some-targeting-key"),
                    v
                ),
                json!("small")
            );
            assert_eq!(
                eval_flag(EDGE, "fractional-null-bucket-key-flag", json!({}), v),
                json!(null)
            );
            assert_eq!(
                eval_flag(EDGE, "fractional-zero-weights-flag", tk("any-user"), v),
                json!(null)
            );
            assert_eq!(
                eval_flag(EDGE, "fractional-negative-weight-flag", tk("any-user"), v),
                json!("two")
            );
            assert_eq!(
                eval_flag(EDGE, "targeting-null-flag", json!({}), v),
                json!(null)
            );
        }
        assert_eq!(
            eval_flag(
                CUSTOM,
                "fractional-flag-shorthand",
                json!({"irrelevant": "none"}),
                V3
            ),
            json!(null)
        );
    }

    #[test]
    fn fractional_nested_expressions() {
        let ctx = |tk: &str, key: &str, val: &str| json!({"targetingKey": tk, key: val});
        for (tk, tier, want) in [
            ("jon@company.com", "premium", "premium"),
            ("jon@company.com", "basic", "standard"),
            ("user1", "premium", "standard"),
            ("user1", "basic", "standard"),
        ] {
            assert_eq!(
                eval_flag(
                    CUSTOM,
                    "fractional-nested-if-flag",
                    ctx(tk, "tier", tier),
                    FractionalVersion::V2
                ),
                json!(want)
            );
        }
        for (tk, color, want) in [
            ("jon@company.com", "red", json!("red")),
            ("jon@company.com", "green", json!("green")),
            ("user1", "red", json!("blue")),
            ("jon@company.com", "yellow", json!("yellow")),
            ("jon@company.com", "", json!("")),
        ] {
            assert_eq!(
                eval_flag(
                    CUSTOM,
                    "fractional-nested-var-flag",
                    ctx(tk, "color", color),
                    FractionalVersion::V2
                ),
                want
            );
        }
        for (tk, tier, want) in [
            ("jon@company.com", "premium", "red"),
            ("jon@company.com", "basic", "blue"),
            ("user1", "premium", "red"),
            ("user1", "basic", "blue"),
        ] {
            assert_eq!(
                eval_flag(
                    CUSTOM,
                    "fractional-nested-weight-flag",
                    ctx(tk, "tier", tier),
                    FractionalVersion::V2
                ),
                json!(want)
            );
        }
    }

    /// Reads the `fractional-basic-flag` example rows (`@fractional-v3`) from the Gherkin file:
    /// (raw input, type, expected variant).
    fn basic_flag_rows() -> Vec<(String, String, String)> {
        let text = std::fs::read_to_string(dir().join("gherkin/targeting.feature")).unwrap();
        let mut rows = Vec::new();
        let mut in_scenario = false;
        let mut fixed_type: Option<String> = None;
        for line in text.lines() {
            let l = line.trim();
            if l.starts_with("Scenario") {
                in_scenario = false;
                fixed_type = None;
            }
            if l.contains("\"fractional-basic-flag\"") {
                in_scenario = true;
            }
            if in_scenario && l.contains("with type \"") && !l.contains("<type>") {
                let t = l.split("with type \"").nth(1).unwrap();
                fixed_type = Some(t[..t.find('"').unwrap()].to_owned());
            }
            if in_scenario && l.starts_with('|') && !l.contains("hashing_input") {
                let cells: Vec<String> = l
                    .trim_matches('|')
                    .split('|')
                    .map(|c| c.trim().to_owned())
                    .collect();
                match (&fixed_type, cells.as_slice()) {
                    (Some(t), [input, want]) => rows.push((input.clone(), t.clone(), want.clone())),
                    (None, [input, t, want]) => rows.push((input.clone(), t.clone(), want.clone())),
                    _ => panic!("unexpected row {l}"),
                }
            }
        }
        rows
    }

    #[test]
    fn fractional_v3_basic_flag_table_from_gherkin() {
        let rule = rule(CUSTOM, "fractional-basic-flag");
        let rows = basic_flag_rows();
        assert!(rows.len() > 100, "found only {} rows", rows.len());
        for (input, ty, want) in rows {
            // Gherkin cells are taken literally (no escape processing), as the providers do.
            let value = match ty.as_str() {
                "String" => Value::String(input.clone()),
                "Boolean" => Value::Bool(input == "true"),
                "Integer" => Value::from(input.parse::<i64>().unwrap()),
                "Float" => json!(input.parse::<f64>().unwrap()),
                "Object" => serde_json::from_str(&input).unwrap(),
                other => panic!("type {other}"),
            };
            let got = run_with(
                &rule,
                &json!({"hashing_input": value}),
                "fractional-basic-flag",
                FractionalVersion::V3,
            )
            .unwrap();
            assert_eq!(got, json!(want), "{ty} {input:?}");
        }
    }

    #[test]
    fn string_semver_and_targeting_key_flags() {
        let v2 = FractionalVersion::V2;
        for (id, want) in [
            ("abcdef", "prefix"),
            ("uvwxyz", "postfix"),
            ("abcxyz", "prefix"),
            ("lmnopq", "none"),
            ("3", "none"),
        ] {
            assert_eq!(
                eval_flag(CUSTOM, "starts-ends-flag", json!({"id": id}), v2),
                json!(want),
                "{id}"
            );
        }
        for (ver, want) in [
            ("2.0.0", "equal"),
            ("2.1.0", "greater"),
            ("1.9.0", "lesser"),
            ("2.0.0-alpha", "lesser"),
            ("2.0.0.0", "none"),
        ] {
            assert_eq!(
                eval_flag(
                    CUSTOM,
                    "equal-greater-lesser-version-flag",
                    json!({"version": ver}),
                    v2
                ),
                json!(want),
                "{ver}"
            );
        }
        for (ver, want) in [("3.0.1", "minor"), ("3.1.0", "major"), ("4.0.0", "none")] {
            assert_eq!(
                eval_flag(
                    CUSTOM,
                    "major-minor-version-flag",
                    json!({"version": ver}),
                    v2
                ),
                json!(want),
                "{ver}"
            );
        }
        for (ver, want) in [
            ("1.0.0", "match"),
            ("v1.0.0", "match"),
            ("V1.0.0", "match"),
            ("2.0.0", "no-match"),
        ] {
            assert_eq!(
                eval_flag(CUSTOM, "semver-v-prefix-flag", json!({"version": ver}), v2),
                json!(want),
                "{ver}"
            );
        }
        for (ver, want) in [
            (json!("1.5.0"), "match"),
            (json!("1.0.0"), "match"),
            (json!("1.0"), "match"),
            (json!("1"), "match"),
            (json!(1), "match"),
            (json!(1.0), "match"),
            (json!(1.2), "match"),
            (json!("2.0.0"), "no-match"),
        ] {
            assert_eq!(
                eval_flag(
                    CUSTOM,
                    "semver-partial-version-flag",
                    json!({"version": ver}),
                    v2
                ),
                json!(want),
                "{ver}"
            );
        }
        for (ver, want) in [
            (json!(1.2), "match"),
            (json!(1.1), "no-match"),
            (json!(2), "match"),
            (json!(1), "no-match"),
            (json!("1.2"), "match"),
        ] {
            assert_eq!(
                eval_flag(
                    CUSTOM,
                    "semver-numeric-context-flag",
                    json!({"version": ver}),
                    v2
                ),
                json!(want),
                "{ver}"
            );
        }
        for (ver, want) in [
            ("1.0.0", "match"),
            ("1.0.0+other", "match"),
            ("2.0.0", "no-match"),
        ] {
            assert_eq!(
                eval_flag(
                    CUSTOM,
                    "semver-build-metadata-flag",
                    json!({"version": ver}),
                    v2
                ),
                json!(want),
                "{ver}"
            );
        }
        for flag in [
            "semver-invalid-version-flag",
            "semver-invalid-operator-flag",
            "semver-wrong-args-flag",
            "starts-with-wrong-args-flag",
            "ends-with-wrong-args-flag",
        ] {
            let ver = if flag == "semver-invalid-version-flag" {
                "not-a-version"
            } else {
                "1.0.0"
            };
            assert_eq!(
                eval_flag(EDGE, flag, json!({"version": ver}), v2),
                json!(null),
                "{flag}"
            );
        }
        for flag in ["starts-with-non-string-flag", "ends-with-non-string-flag"] {
            assert_eq!(
                eval_flag(EDGE, flag, json!({"num": 123}), v2),
                json!(null),
                "{flag}"
            );
        }
        assert_eq!(
            eval_flag(EDGE, "targeting-null-variant-flag", json!({}), v2),
            json!(null)
        );
        assert_eq!(
            eval_flag(EDGE, "missing-variant-targeting-flag", json!({}), v2),
            json!("three")
        );
        assert_eq!(
            eval_flag(EDGE, "non-string-variant-targeting-flag", json!({}), v2),
            json!(true)
        );
        let tk = |k: &str| json!({"targetingKey": k});
        assert_eq!(
            eval_flag(
                TESTING,
                "targeting-key-flag",
                tk("5c3d8535-f81a-4478-a6d3-afaa4d51199e"),
                v2
            ),
            json!("hit")
        );
        assert_eq!(
            eval_flag(
                TESTING,
                "targeting-key-flag",
                tk("f20bd32d-703b-48b6-bc8e-79d53c85134a"),
                v2
            ),
            json!(null)
        );
        assert_eq!(
            eval_flag(TESTING, "timestamp-flag", json!({"time": 1}), v2),
            json!("past")
        );
        assert_eq!(
            eval_flag(
                TESTING,
                "timestamp-flag",
                json!({"time": 4133980802u64}),
                v2
            ),
            json!("future")
        );
        let person = json!({"fn": "Sulisław", "ln": "Świętopełk", "age": 29, "customer": false});
        assert_eq!(
            eval_flag(TESTING, "context-aware", person, v2),
            json!("internal")
        );
        assert_eq!(
            eval_flag(TESTING, "context-aware", json!({"fn": "x"}), v2),
            json!("external")
        );
    }
}

#[test]
fn data_re_read_as_rules_is_bounded() {
    // v3.9.1 applies a one-key object an `if` branch yields; a self-referencing one would
    // recurse without end (Go crashes), here it is an error.
    let cyclic = json!({"r": {"if": [true, {"var": "r"}]}});
    run_err(json!({"if": [true, {"var": "r"}]}), cyclic);
    // One level is answered as v3.9.1 does.
    let once = json!({"r": {"cat": ["a", "b"]}});
    assert_eq!(run(json!({"if": [true, {"var": "r"}]}), once), json!("ab"));
    // Deep data read as a rule is refused, not a stack overflow.
    let mut deep = json!(true);
    for _ in 0..100 {
        deep = json!({"!": [deep]});
    }
    run_err(json!({"if": [true, {"var": "r"}]}), json!({ "r": deep }));
}

#[test]
fn rules_that_can_see_the_timestamp_are_known_at_compile_time() {
    for (rule, reads) in [
        (json!({"var": "$flagd.timestamp"}), true),
        (json!({"var": ["$flagd.timestamp", 0]}), true),
        (json!({"var": "$flagd"}), true),
        (json!({"var": ""}), true),
        (json!({"var": []}), true),
        (json!({"var": "."}), true),
        (json!({"var": {"cat": ["$flagd.", "flagKey"]}}), true),
        (json!({"missing": ["a"]}), true),
        (json!({"missing_some": [1, ["a"]]}), true),
        (json!({"var": ["x", {"var": "$flagd.timestamp"}]}), true),
        (json!({"map": [[1], {"var": ""}]}), true),
        (
            json!({"if": [true, {">": [{"var": "$flagd.timestamp"}, 0]}]}),
            true,
        ),
        (json!({"var": "$flagd.flagKey"}), false),
        (json!({"var": "$flagd.other"}), false),
        (json!({"var": "email"}), false),
        (json!({"in": ["@example.com", {"var": "email"}]}), false),
        (json!({"fractional": [["a", 50], ["b", 50]]}), false),
        (json!({"sem_ver": [{"var": "v"}, ">=", "1.0.0"]}), false),
        (json!(true), false),
    ] {
        let compiled = Rule::compile(&rule).unwrap();
        assert_eq!(compiled.reads_timestamp(), reads, "{rule}");
    }
}
