//! The evaluator: walks the compiled tree, borrowing from the rule and the context.

use serde_json::{Map, Value};

use super::node::{
    static_target, Cmp, Compiler, Flagd, IterNode, Node, Op, Seg, Subject, SubstArgs, VarDyn,
    VarNode, VarTarget,
};
use super::val::{
    arith_number, go_int, kind_name, less, loose_eq, num_value, push_go_string, push_number,
    strict_eq, truthy, Val, View,
};
use super::{fractional, semver, strings, Env, EvalError, MAX_STEPS};

/// How deeply values from the data may be re-read as rules (v3.9.1 re-applies an `if` branch
/// or a substituted `var` that yields a one-key object); a cycle in the data would otherwise
/// recurse without end.
const MAX_INTERPRET_DEPTH: u32 = 4;

/// How deeply a value re-read as a rule may nest: it is compiled as if it sat this far below
/// the rule's depth limit, so the stack stays bounded with `MAX_INTERPRET_DEPTH` levels.
const INTERPRETED_RULE_DEPTH: usize = 32;

/// Per-evaluation state: what the rule may read and how much work is left.
pub(super) struct Cx<'a> {
    pub(super) env: Env<'a>,
    steps: u64,
    interpret_depth: u32,
}

impl<'a> Cx<'a> {
    pub(super) fn new(env: Env<'a>) -> Cx<'a> {
        Cx {
            env,
            steps: 0,
            interpret_depth: 0,
        }
    }

    /// Charges `n` units of work against the budget.
    #[inline]
    pub(super) fn charge(&mut self, n: u64) -> Result<(), EvalError> {
        self.steps += n;
        if self.steps > MAX_STEPS {
            Err(EvalError(format!(
                "rule exceeded the evaluation budget of {MAX_STEPS} steps"
            )))
        } else {
            Ok(())
        }
    }

    /// Charges for copying `v` (about one unit per element and per 64 bytes of text), so
    /// rules cannot multiply large context values without limit.
    pub(super) fn charge_copy(&mut self, v: &Value) -> Result<(), EvalError> {
        if let Value::String(s) = v {
            return self.charge(1 + s.len() as u64 / 64);
        }
        let mut cost: u64 = 1;
        let mut stack = vec![v];
        while let Some(v) = stack.pop() {
            match v {
                Value::String(s) => cost += s.len() as u64 / 64,
                Value::Array(items) => {
                    cost += items.len() as u64;
                    stack.extend(items.iter());
                }
                Value::Object(map) => {
                    cost += map.len() as u64;
                    stack.extend(map.values());
                }
                _ => {}
            }
        }
        self.charge(cost)
    }

    /// Takes ownership of a value, charging when that means copying borrowed data.
    pub(super) fn owned(&mut self, v: Val<'_>) -> Result<Value, EvalError> {
        if let Val::Ref(r @ (Value::String(_) | Value::Array(_) | Value::Object(_))) = v {
            self.charge_copy(r)?;
        }
        v.into_value()
    }

    /// The `$flagd` object flagd adds to the context.
    fn flagd_object(&self) -> Value {
        let mut m = Map::new();
        m.insert("flagKey".into(), Value::from(self.env.flag_key));
        m.insert("timestamp".into(), Value::from(self.env.timestamp));
        Value::Object(m)
    }
}

/// What `var` reads, and which outer data replaces `var`s first.
#[derive(Debug, Clone, Copy)]
pub(super) struct Scope<'x> {
    /// The data `var` reads.
    pub(super) data: Data<'x>,
    /// Set inside `filter`/`none`/`some`/`all` predicates: v3.9.1 (`solveVars`) first replaces
    /// every `var` with its value in the enclosing data when that value is not null.
    pub(super) subst: Option<&'x Frame<'x>>,
}

/// The data of a scope.
#[derive(Debug, Clone, Copy)]
pub(super) enum Data<'x> {
    /// The request context (plus `$flagd`).
    Root,
    /// The current element of `map`, `filter`, `all`, `none`, `some`.
    Item(&'x Value),
    /// Inside `reduce`: `{"current": …, "accumulator": …, "valueType": …}`.
    Reduce {
        current: &'x Value,
        acc: &'x Value,
        ty: AccType,
    },
}

/// One level of `var` substitution: the scope whose data is consulted (its own `subst`
/// names the levels further out, which v3.9.1 consults first).
#[derive(Debug)]
pub(super) struct Frame<'x> {
    pub(super) scope: Scope<'x>,
}

impl<'x> Scope<'x> {
    /// The top-level scope.
    pub(super) const ROOT: Scope<'static> = Scope {
        data: Data::Root,
        subst: None,
    };

    /// The same data without substitution.
    fn plain(self) -> Scope<'x> {
        Scope {
            data: self.data,
            subst: None,
        }
    }
}

type R<'x> = Result<Val<'x>, EvalError>;

impl Node {
    /// Evaluates this node.
    pub(super) fn eval<'x, 'a: 'x>(&'x self, scope: Scope<'x>, cx: &mut Cx<'a>) -> R<'x> {
        cx.charge(1)?;
        match self {
            Node::Lit(v) => Ok(Val::Ref(v)),
            Node::Arr(items) => {
                let mut out = Vec::with_capacity(items.len());
                for item in items.iter() {
                    let v = item.eval(scope, cx)?;
                    out.push(cx.owned(v)?);
                }
                Ok(Val::Own(Value::Array(out)))
            }
            Node::Var(var) => {
                if var.subst {
                    if let Some(frame) = scope.subst {
                        if let Some(v) = subst_var(var, frame, cx)? {
                            return as_logic(v, scope, cx);
                        }
                    }
                }
                plain_var(var, scope.plain(), cx)
            }
            Node::VarDyn(var) => {
                if let Some(frame) = scope.subst {
                    if let Some(v) = subst_var_dyn(var, frame, cx)? {
                        return as_logic(v, scope, cx);
                    }
                }
                plain_var_dyn(var, scope.plain(), cx)
            }
            Node::Op(op, args) => eval_op(*op, args, scope, cx),
            Node::OpDyn(op, arg) => eval_dyn(*op, arg, scope, cx),
            Node::Iter(op, it) => iterate(*op, it, scope, cx),
            Node::SubstArgs(sa) => subst_args(sa, scope, cx),
            Node::Fail(msg) => Err(EvalError(msg.to_string())),
        }
    }
}

/// Evaluates argument `i`, or `None` when it was not given.
#[inline]
pub(super) fn arg<'x, 'a: 'x>(
    args: &'x [Node],
    i: usize,
    scope: Scope<'x>,
    cx: &mut Cx<'a>,
) -> Result<Option<Val<'x>>, EvalError> {
    match args.get(i) {
        Some(node) => node.eval(scope, cx).map(Some),
        None => Ok(None),
    }
}

/// Evaluates the arguments from `from` on only for their errors (v3.9.1 evaluates the whole
/// argument array before an operator looks at it).
fn eval_rest<'x, 'a: 'x>(
    args: &'x [Node],
    from: usize,
    scope: Scope<'x>,
    cx: &mut Cx<'a>,
) -> Result<(), EvalError> {
    for node in args.iter().skip(from) {
        node.eval(scope, cx)?;
    }
    Ok(())
}

/// A static `var` read from the scope's own data (v3.9.1 `getVar`): a two-element
/// `[path, default]` evaluates its default eagerly.
fn plain_var<'x, 'a: 'x>(var: &'x VarNode, scope: Scope<'x>, cx: &mut Cx<'a>) -> R<'x> {
    let default = match &var.default {
        None => None,
        Some(Node::Lit(v)) => Some(Val::Ref(v)),
        Some(node) => Some(node.eval(scope, cx)?),
    };
    let found = lookup_target(&var.target, scope.data, cx)?;
    match found {
        Some(v) if !v.is_null() => Ok(v),
        _ => Ok(default.unwrap_or(Val::Null)),
    }
}

/// A computed `var` read from the scope's own data.
fn plain_var_dyn<'x, 'a: 'x>(var: &'x VarDyn, scope: Scope<'x>, cx: &mut Cx<'a>) -> R<'x> {
    let path = var.path.eval(scope, cx)?;
    let v = get_var(path.view(), scope.data, cx)?;
    // The path value may be local: hand back an owned value unless it borrows the data.
    Ok(v)
}

/// The value of a static `var` in the substitution frames, outermost first; `None` when every
/// frame has null there.
fn subst_var<'x, 'a: 'x>(
    var: &'x VarNode,
    frame: &'x Frame<'x>,
    cx: &mut Cx<'a>,
) -> Result<Option<Val<'x>>, EvalError> {
    if let Some(outer) = frame.scope.subst {
        if let Some(v) = subst_var(var, outer, cx)? {
            return Ok(Some(v));
        }
    }
    let v = plain_var(var, frame.scope.plain(), cx)?;
    Ok(if v.is_null() { None } else { Some(v) })
}

fn subst_var_dyn<'x, 'a: 'x>(
    var: &'x VarDyn,
    frame: &'x Frame<'x>,
    cx: &mut Cx<'a>,
) -> Result<Option<Val<'x>>, EvalError> {
    if let Some(outer) = frame.scope.subst {
        if let Some(v) = subst_var_dyn(var, outer, cx)? {
            return Ok(Some(v));
        }
    }
    let v = plain_var_dyn(var, frame.scope.plain(), cx)?;
    Ok(if v.is_null() { None } else { Some(v) })
}

/// v3.9.1 `getVar` on an evaluated path: null (the data if it is a scalar), `""` or `[]` (the
/// whole data), a number (as text), `[path]`/`[path, default]` (path must be a string) or a
/// dotted path.
fn get_var<'x, 'a: 'x>(path: View<'_>, data: Data<'x>, cx: &mut Cx<'a>) -> R<'x> {
    if let View::Obj(m) = path {
        if m.len() == 1 {
            // A one-key object (from the data) is applied first (`parseValues`), once.
            let scope = Scope { data, subst: None };
            let p = interpret(path, scope, cx)?;
            if let View::Obj(_) = p.view() {
                return Err(EvalError("var path cannot be an object".into()));
            }
            return get_var(p.view(), data, cx).and_then(|v| detach(v, cx));
        }
    }
    let (path, default) = match path {
        View::Null => {
            return Ok(lookup_target(&VarTarget::NullPath, data, cx)?.unwrap_or(Val::Null));
        }
        View::Arr([]) => return whole_data(data, cx),
        View::Arr(items) => {
            let default = match items {
                [_, d] => Some(d),
                _ => None,
            };
            match &items[0] {
                Value::String(s) => (PathText::Str(s), default),
                other => {
                    return Err(EvalError(format!(
                        "var path cannot be {}",
                        kind_name(Some(View::of(other)))
                    )))
                }
            }
        }
        View::Str(s) => (PathText::Str(s), None),
        View::Num(n) => (PathText::Num(n), None),
        other => {
            return Err(EvalError(format!(
                "var path cannot be {}",
                kind_name(Some(other))
            )))
        }
    };
    let found = match path {
        PathText::Str(s) => lookup_str(s, data, cx)?,
        PathText::Num(n) => {
            let mut s = String::new();
            push_number(&mut s, n);
            lookup_str(&s, data, cx)?
        }
    };
    match found {
        Some(v) if !v.is_null() => Ok(v),
        _ => Ok(match default {
            Some(d) => Val::Own(cx.owned(Val::Ref(d))?),
            None => Val::Null,
        }),
    }
}

enum PathText<'p> {
    Str(&'p str),
    Num(f64),
}

/// Looks a dotted path up at run time (computed `var`, `missing`, `missing_some`).
fn lookup_str<'x, 'a: 'x>(
    path: &str,
    data: Data<'x>,
    cx: &mut Cx<'a>,
) -> Result<Option<Val<'x>>, EvalError> {
    lookup_target(&static_target(path), data, cx)
}

/// Resolves a `var` target; `None` or `Some(Null)` means absent.
fn lookup_target<'x, 'a: 'x>(
    target: &VarTarget,
    data: Data<'x>,
    cx: &mut Cx<'a>,
) -> Result<Option<Val<'x>>, EvalError> {
    Ok(match target {
        VarTarget::Whole => Some(whole_data(data, cx)?),
        VarTarget::NullPath => match data {
            Data::Item(v @ (Value::Bool(_) | Value::Number(_) | Value::String(_))) => {
                Some(Val::Ref(v))
            }
            _ => None,
        },
        VarTarget::Flagd(kind, segs) => match data {
            Data::Root => match kind {
                Flagd::Object => Some(Val::Own(cx.flagd_object())),
                Flagd::Key => Some(Val::Str(cx.env.flag_key)),
                Flagd::Timestamp => Some(Val::Num(cx.env.timestamp as f64)),
                Flagd::Missing => None,
            },
            other => lookup_path(other, cx, segs),
        },
        VarTarget::Path(segs) => lookup_path(data, cx, segs),
    })
}

/// The whole data of the current scope.
fn whole_data<'x, 'a: 'x>(data: Data<'x>, cx: &mut Cx<'a>) -> R<'x> {
    Ok(match data {
        Data::Item(v) => Val::Ref(v),
        Data::Root => {
            // Rare: materialise the context as the Go engine sees it (with `$flagd`).
            for v in cx.env.context.values() {
                cx.charge_copy(v)?;
            }
            let mut m = cx.env.context.clone();
            m.insert("$flagd".into(), cx.flagd_object());
            Val::Own(Value::Object(m))
        }
        Data::Reduce { current, acc, ty } => {
            cx.charge_copy(current)?;
            cx.charge_copy(acc)?;
            let mut m = Map::new();
            m.insert("current".into(), current.clone());
            m.insert("accumulator".into(), acc.clone());
            m.insert("valueType".into(), Value::from(ty.name()));
            Val::Own(Value::Object(m))
        }
    })
}

/// Walks a path from the scope's data.
fn lookup_path<'x>(data: Data<'x>, cx: &Cx<'x>, segs: &[Seg]) -> Option<Val<'x>> {
    let (first, rest) = segs.split_first()?;
    let mut cur: &'x Value = match data {
        Data::Root => cx.env.context.get(&*first.key)?,
        Data::Item(v) => step(v, first)?,
        Data::Reduce { current, acc, ty } => match &*first.key {
            "current" => current,
            "accumulator" => acc,
            // A string: nothing below it.
            "valueType" => {
                return if rest.is_empty() {
                    Some(Val::Str(ty.name()))
                } else {
                    None
                }
            }
            _ => return None,
        },
    };
    for seg in rest {
        cur = step(cur, seg)?;
    }
    Some(Val::Ref(cur))
}

#[inline]
fn step<'x>(v: &'x Value, seg: &Seg) -> Option<&'x Value> {
    match v {
        Value::Object(m) => m.get(&*seg.key),
        Value::Array(a) => usize::try_from(seg.index).ok().and_then(|i| a.get(i)),
        _ => None,
    }
}

/// Whether v3.9.1's `parseValues` would treat a value from the data as a rule: a one-key
/// object, or an array holding one (at any array depth).
fn holds_logic(v: View<'_>) -> bool {
    match v {
        View::Obj(m) => m.len() == 1,
        View::Arr(items) => items.iter().any(|i| holds_logic(View::of(i))),
        _ => false,
    }
}

/// v3.9.1 `parseValues` on a value that came from the data (a substituted `var`): one-key
/// objects in it are applied as rules against the current data.
fn as_logic<'x, 'a: 'x>(v: Val<'x>, scope: Scope<'x>, cx: &mut Cx<'a>) -> R<'x> {
    if holds_logic(v.view()) {
        interpret(v.view(), scope, cx)
    } else {
        Ok(v)
    }
}

/// Compiles and evaluates a value from the data as a rule (rare: only when the data holds
/// one-key objects that v3.9.1 re-reads as operations).
fn interpret<'x, 'a: 'x>(v: View<'_>, scope: Scope<'x>, cx: &mut Cx<'a>) -> R<'x> {
    if cx.interpret_depth >= MAX_INTERPRET_DEPTH {
        return Err(EvalError("data re-read as a rule nests too deeply".into()));
    }
    let value = view_to_value(v);
    cx.charge_copy(&value)?;
    let node = Compiler::new()
        .compile(&value, super::MAX_DEPTH - INTERPRETED_RULE_DEPTH)
        .map_err(|e| EvalError(e.0))?;
    cx.interpret_depth += 1;
    let r = node.eval(scope.plain(), cx).and_then(|r| detach(r, cx));
    cx.interpret_depth -= 1;
    r
}

/// Turns a value that may borrow a temporary node into one that does not.
fn detach<'x, 'a>(v: Val<'_>, cx: &mut Cx<'a>) -> R<'x> {
    Ok(match v {
        Val::Null => Val::Null,
        Val::Bool(b) => Val::Bool(b),
        Val::Num(n) => Val::Num(n),
        other => Val::Own(cx.owned(other)?),
    })
}

/// v3.9.1 `apply` on a body that must be an object (`all`/`none`/`some`): a one-key object is
/// an operation (whose own `var`s the frame `again` substitutes first), any other object is
/// returned as is, anything else fails.
fn apply_value<'x, 'a: 'x>(
    v: Val<'x>,
    scope: Scope<'x>,
    again: Option<&Frame<'_>>,
    cx: &mut Cx<'a>,
) -> R<'x> {
    match v.view() {
        View::Obj(m) if m.len() == 1 => {
            if cx.interpret_depth >= MAX_INTERPRET_DEPTH {
                return Err(EvalError("data re-read as a rule nests too deeply".into()));
            }
            let value = view_to_value(v.view());
            cx.charge_copy(&value)?;
            let node = Compiler::new()
                .compile(&value, super::MAX_DEPTH - INTERPRETED_RULE_DEPTH)
                .map_err(|e| EvalError(e.0))?;
            let s = Scope {
                data: scope.data,
                subst: again,
            };
            cx.interpret_depth += 1;
            let r = apply_body(&node, s, cx).and_then(|r| detach(r, cx));
            cx.interpret_depth -= 1;
            r
        }
        View::Obj(_) => Ok(v),
        other => Err(EvalError(format!(
            "the logic applied to each element cannot be {}",
            kind_name(Some(other))
        ))),
    }
}

fn eval_op<'x, 'a: 'x>(op: Op, args: &'x [Node], scope: Scope<'x>, cx: &mut Cx<'a>) -> R<'x> {
    match op {
        Op::If => {
            let n = args.len();
            let mut i = 0;
            while i + 1 < n {
                if args[i].eval(scope, cx)?.truthy() {
                    return clause(&args[i + 1], scope, cx);
                }
                i += 2;
            }
            if n % 2 == 1 {
                clause(&args[n - 1], scope, cx)
            } else {
                Ok(Val::Null)
            }
        }
        Op::And | Op::Or => {
            let want = op == Op::Or;
            let mut last = Val::Null;
            for node in args.iter() {
                let v = node.eval(scope, cx)?;
                if v.truthy() == want {
                    return Ok(v);
                }
                last = v;
            }
            Ok(last)
        }
        Op::Not | Op::Truthy => {
            // The first argument decides; an empty list is itself the (falsy) value.
            let first = arg(args, 0, scope, cx)?.is_some_and(|v| v.truthy());
            eval_rest(args, 1, scope, cx)?;
            Ok(Val::Bool(if op == Op::Not { !first } else { first }))
        }
        Op::Cmp(c) => compare(c, args, scope, cx),
        Op::Add | Op::Sub | Op::Mul | Op::Div | Op::Mod | Op::Abs => arith(op, args, scope, cx),
        Op::Max | Op::Min => {
            if args.is_empty() {
                return Ok(Val::Null);
            }
            let mut best = f64::NAN;
            for (i, node) in args.iter().enumerate() {
                let v = node.eval(scope, cx)?;
                let n = arith_number(Some(v.view()))?;
                let better = if op == Op::Max { n > best } else { n < best };
                if i == 0 || better {
                    best = n;
                }
            }
            Ok(Val::Num(best))
        }
        Op::In => op_in(args, scope, cx),
        Op::Cat => cat(args, scope, cx),
        Op::Substr => substr(args, scope, cx),
        Op::Merge => {
            let mut out = Vec::new();
            for node in args.iter() {
                match node.eval(scope, cx)? {
                    Val::Own(Value::Array(items)) => {
                        cx.charge(items.len() as u64)?;
                        out.extend(items);
                    }
                    Val::Ref(Value::Array(items)) => {
                        for item in items {
                            cx.charge_copy(item)?;
                        }
                        out.extend(items.iter().cloned());
                    }
                    v => out.push(cx.owned(v)?),
                }
            }
            Ok(Val::Own(Value::Array(out)))
        }
        Op::Missing => missing(args, scope, cx),
        Op::MissingSome => missing_some(args, scope, cx),
        Op::Set => set(args, scope, cx),
        Op::ContainsAll | Op::ContainsAny | Op::ContainsNone => contains(op, args, scope, cx),
        Op::Map | Op::Filter | Op::All | Op::None | Op::Some | Op::Reduce => Err(EvalError(
            "iterating operators are compiled separately".into(),
        )),
        Op::Fractional => fractional::eval(args, scope, cx),
        Op::SemVer => semver::eval(args, scope, cx),
        Op::StartsWith => strings::starts_with(args, scope, cx),
        Op::EndsWith => strings::ends_with(args, scope, cx),
    }
}

/// See [`Node::SubstArgs`]: the replaced array becomes the operator's argument list.
fn subst_args<'x, 'a: 'x>(sa: &'x SubstArgs, scope: Scope<'x>, cx: &mut Cx<'a>) -> R<'x> {
    let substituted = match (&sa.var, scope.subst) {
        (Node::Var(var), Some(frame)) if var.subst => subst_var(var, frame, cx)?,
        (Node::VarDyn(var), Some(frame)) => subst_var_dyn(var, frame, cx)?,
        _ => None,
    };
    match substituted {
        Some(v) if matches!(v.view(), View::Arr(_)) => {
            let mut rule = Map::new();
            rule.insert(sa.name.to_string(), view_to_value(v.view()));
            interpret(View::Obj(&rule), scope, cx)
        }
        _ => Err(EvalError(format!(
            "{}: the arguments must be an array",
            sa.name
        ))),
    }
}

/// An `if` branch: a one-key object it yields (e.g. from the data) is applied as a rule once
/// more (v3.9.1 `evaluateClause`).
fn clause<'x, 'a: 'x>(node: &'x Node, scope: Scope<'x>, cx: &mut Cx<'a>) -> R<'x> {
    let v = node.eval(scope, cx)?;
    match v.view() {
        View::Obj(m) if m.len() == 1 => interpret(v.view(), scope, cx),
        _ => Ok(v),
    }
}

/// An operator whose argument list was not written as an array: the value of the argument is
/// the list (v3.9.1 `parseValues`); a non-array value gives each operator's own answer.
fn eval_dyn<'x, 'a: 'x>(op: Op, arg: &'x Node, scope: Scope<'x>, cx: &mut Cx<'a>) -> R<'x> {
    let v = arg.eval(scope, cx)?;
    if let View::Arr(items) = v.view() {
        for item in items {
            cx.charge_copy(item)?;
        }
        let tmp: Vec<Node> = items.iter().map(|i| Node::Lit(i.clone())).collect();
        let r = eval_op(op, &tmp, scope, cx)?;
        return detach(r, cx);
    }
    let view = v.view();
    let not_a_list = || {
        Err(EvalError(format!(
            "the arguments cannot be {}",
            kind_name(Some(view))
        )))
    };
    match op {
        Op::Not => Ok(Val::Bool(!truthy(view))),
        Op::Truthy => Ok(Val::Bool(truthy(view))),
        Op::Cmp(Cmp::StrictEq) => Ok(Val::Bool(false)),
        Op::Cmp(Cmp::StrictNe) => Ok(Val::Bool(true)),
        Op::Add => Ok(Val::Num(arith_number(Some(view))?)),
        Op::Abs => Ok(Val::Num(arith_number(Some(view))?.abs())),
        Op::Cat => match view {
            View::Str(_) => Ok(v),
            _ => not_a_list(),
        },
        Op::Merge => match view {
            View::Bool(_) | View::Num(_) | View::Str(_) => {
                let item = cx.owned(v)?;
                Ok(Val::Own(Value::Array(vec![item])))
            }
            _ => not_a_list(),
        },
        Op::Missing => match view {
            View::Str(_) => {
                let present = !get_var(view, scope.data, cx)?.is_null();
                Ok(Val::Own(Value::Array(if present {
                    Vec::new()
                } else {
                    vec![cx.owned(v)?]
                })))
            }
            _ => not_a_list(),
        },
        Op::ContainsAll | Op::ContainsAny => Ok(Val::Bool(false)),
        Op::ContainsNone => Ok(Val::Bool(true)),
        // flagd's own operators answer null when their arguments are not an array.
        Op::Fractional | Op::SemVer | Op::StartsWith | Op::EndsWith => Ok(Val::Null),
        _ => not_a_list(),
    }
}

/// Comparisons (v3.9.1 `comp.go`): fewer than two arguments is false (`!=`, `!==`: true);
/// `<`, `<=`, `>`, `>=` with exactly three are the "between" forms; the others ignore a third.
fn compare<'x, 'a: 'x>(c: Cmp, args: &'x [Node], scope: Scope<'x>, cx: &mut Cx<'a>) -> R<'x> {
    let a = arg(args, 0, scope, cx)?;
    let b = arg(args, 1, scope, cx)?;
    let c3 = arg(args, 2, scope, cx)?;
    eval_rest(args, 3, scope, cx)?;
    if args.len() < 2 {
        return Ok(Val::Bool(matches!(c, Cmp::Ne | Cmp::StrictNe)));
    }
    let (av, bv) = (a.as_ref().map(Val::view), b.as_ref().map(Val::view));
    let le = |x, y| less(x, y) || loose_eq(x, y);
    if args.len() == 3 && matches!(c, Cmp::Lt | Cmp::Le | Cmp::Gt | Cmp::Ge) {
        let cv = c3.as_ref().map(Val::view);
        let r = match c {
            Cmp::Lt => less(av, bv) && less(bv, cv),
            Cmp::Le => le(av, bv) && le(bv, cv),
            Cmp::Gt => less(cv, bv) && less(bv, av),
            _ => le(cv, bv) && le(bv, av),
        };
        return Ok(Val::Bool(r));
    }
    let r = match c {
        Cmp::Eq => loose_eq(av, bv),
        Cmp::Ne => !loose_eq(av, bv),
        Cmp::StrictEq => strict_eq(av, bv),
        Cmp::StrictNe => !strict_eq(av, bv),
        Cmp::Lt => less(av, bv),
        Cmp::Gt => less(bv, av),
        Cmp::Le => le(av, bv),
        Cmp::Ge => less(bv, av) || loose_eq(bv, av),
    };
    Ok(Val::Bool(r))
}

/// Arithmetic (v3.9.1 `math.go`).
fn arith<'x, 'a: 'x>(op: Op, args: &'x [Node], scope: Scope<'x>, cx: &mut Cx<'a>) -> R<'x> {
    let num = |v: Option<Val<'_>>| arith_number(v.as_ref().map(Val::view));
    match (op, args.len()) {
        (Op::Mod, n) if n < 2 => {
            eval_rest(args, 0, scope, cx)?;
            Err(EvalError("% needs two arguments".into()))
        }
        (Op::Mod, _) => {
            let a = arg(args, 0, scope, cx)?;
            let b = arg(args, 1, scope, cx)?;
            eval_rest(args, 2, scope, cx)?;
            // Go math.Mod: result has the sign of the dividend, like Rust's `%` on f64.
            Ok(Val::Num(num(a)? % num(b)?))
        }
        (Op::Abs, 0) => Err(EvalError("abs needs an argument".into())),
        (Op::Abs, _) => {
            let a = arg(args, 0, scope, cx)?;
            eval_rest(args, 1, scope, cx)?;
            Ok(Val::Num(num(a)?.abs()))
        }
        (Op::Sub, 1) => Ok(Val::Num(-num(arg(args, 0, scope, cx)?)?)),
        (Op::Sub | Op::Div | Op::Add, 0) => Ok(Val::Num(0.0)),
        (Op::Add, 1) => Ok(Val::Num(num(arg(args, 0, scope, cx)?)?)),
        (Op::Add, _) | (Op::Mul, _) => {
            let mut acc = if op == Op::Add { 0.0 } else { 1.0 };
            for node in args.iter() {
                let n = num(Some(node.eval(scope, cx)?))?;
                if op == Op::Add {
                    acc += n;
                } else {
                    acc *= n;
                }
            }
            Ok(Val::Num(acc))
        }
        (_, _) => {
            let mut acc = num(arg(args, 0, scope, cx)?)?;
            for node in args[1..].iter() {
                let n = num(Some(node.eval(scope, cx)?))?;
                if op == Op::Sub {
                    acc -= n;
                } else {
                    acc /= n;
                }
            }
            Ok(Val::Num(acc))
        }
    }
}

/// `in` (v3.9.1 `_in`): substring test for a string haystack (the needle must be a string),
/// membership for an array haystack, false for anything else.
fn op_in<'x, 'a: 'x>(args: &'x [Node], scope: Scope<'x>, cx: &mut Cx<'a>) -> R<'x> {
    let Some(needle) = arg(args, 0, scope, cx)? else {
        return Err(EvalError("in needs arguments".into()));
    };
    let hay = arg(args, 1, scope, cx)?;
    eval_rest(args, 2, scope, cx)?;
    let needle = needle.view();
    let Some(hay) = hay else {
        return Ok(Val::Bool(false));
    };
    let found = match hay.view() {
        View::Str(h) => match needle {
            View::Str(n) => h.contains(n),
            other => {
                return Err(EvalError(format!(
                    "in: cannot look for {} in a string",
                    kind_name(Some(other))
                )))
            }
        },
        View::Arr(items) => {
            cx.charge(items.len() as u64 / 16)?;
            let mut found = false;
            for item in items {
                if member_eq(needle, View::of(item))? {
                    found = true;
                    break;
                }
            }
            found
        }
        _ => false,
    };
    Ok(Val::Bool(found))
}

/// One membership comparison of v3.9.1's `in`.
fn member_eq(needle: View<'_>, element: View<'_>) -> Result<bool, EvalError> {
    match (element, needle) {
        // A nested array is an inclusive numeric range `[low, high]`.
        (View::Arr(range), _) => {
            if range.len() < 2 {
                return Err(EvalError("in: range needs two bounds".into()));
            }
            let x = arith_number(Some(needle))?;
            let lo = arith_number(Some(View::of(&range[0])))?;
            // NaN compares false, as in Go.
            if x.partial_cmp(&lo)
                .is_none_or(|o| o == std::cmp::Ordering::Less)
            {
                return Ok(false);
            }
            let hi = arith_number(Some(View::of(&range[1])))?;
            Ok(hi >= x)
        }
        (e, View::Num(n)) => Ok(arith_number(Some(e))? == n),
        (e, n) => go_equal(n, e),
    }
}

/// Go's `==` on two decoded JSON values of which neither is a number: same kind and equal;
/// two objects (or two arrays) cannot be compared (Go panics).
fn go_equal(a: View<'_>, b: View<'_>) -> Result<bool, EvalError> {
    Ok(match (a, b) {
        (View::Null, View::Null) => true,
        (View::Bool(x), View::Bool(y)) => x == y,
        (View::Str(x), View::Str(y)) => x == y,
        (View::Num(x), View::Num(y)) => x == y,
        (View::Obj(_), View::Obj(_)) | (View::Arr(_), View::Arr(_)) => {
            return Err(EvalError("cannot compare two objects or two arrays".into()))
        }
        _ => false,
    })
}

fn cat<'x, 'a: 'x>(args: &'x [Node], scope: Scope<'x>, cx: &mut Cx<'a>) -> R<'x> {
    if let [only] = args {
        // One argument: its string form, not trimmed.
        let v = only.eval(scope, cx)?;
        if let View::Str(_) = v.view() {
            return Ok(v);
        }
        let mut out = String::new();
        push_go_string(&mut out, v.view())?;
        return Ok(Val::Own(Value::String(out)));
    }
    let mut out = String::new();
    for node in args.iter() {
        let v = node.eval(scope, cx)?;
        push_go_string(&mut out, v.view())?;
    }
    cx.charge(out.len() as u64 / 64)?;
    // v3.9.1 trims surrounding whitespace from a concatenation (strings.TrimSpace).
    Ok(Val::Own(Value::String(trim_owned(out))))
}

fn trim_owned(s: String) -> String {
    let t = s.trim();
    if t.len() == s.len() {
        s
    } else {
        t.to_owned()
    }
}

/// `substr` with Go's integer conversions and slice bounds (a slice out of order fails).
fn substr<'x, 'a: 'x>(args: &'x [Node], scope: Scope<'x>, cx: &mut Cx<'a>) -> R<'x> {
    let v = arg(args, 0, scope, cx)?;
    let from_v = arg(args, 1, scope, cx)?;
    let len_v = arg(args, 2, scope, cx)?;
    eval_rest(args, 3, scope, cx)?;
    let Some(from_v) = from_v else {
        return Err(EvalError("substr needs a start".into()));
    };
    let mut text = String::new();
    push_go_string(&mut text, v.as_ref().map_or(View::Null, Val::view))?;
    let chars = text.chars().count() as i64;
    let mut from = go_int(arith_number(Some(from_v.view()))?);
    if from < 0 {
        from = chars.wrapping_add(from);
    }
    if from < 0 || from > chars {
        return Ok(Val::Own(Value::String(text)));
    }
    let len = match (args.len(), len_v) {
        (3, Some(l)) => go_int(arith_number(Some(l.view()))?),
        _ => chars,
    };
    let to = if len < 0 {
        chars.wrapping_add(len)
    } else {
        from.wrapping_add(len)
    }
    .min(chars);
    if to < from {
        // Go slices runes[from:to] and panics; flagd reports that as PARSE_ERROR.
        return Err(EvalError("substr: end before start".into()));
    }
    cx.charge(text.len() as u64 / 64)?;
    let out: String = text
        .chars()
        .skip(from as usize)
        .take((to - from) as usize)
        .collect();
    Ok(Val::Own(Value::String(out)))
}

fn missing<'x, 'a: 'x>(args: &'x [Node], scope: Scope<'x>, cx: &mut Cx<'a>) -> R<'x> {
    let mut names = Vec::with_capacity(args.len());
    for node in args.iter() {
        names.push(node.eval(scope, cx)?);
    }
    let mut out = Vec::new();
    for name in &names {
        cx.charge(1)?;
        if get_var(name.view(), scope.data, cx)?.is_null() {
            if let View::Num(n) = name.view() {
                // A NaN name (e.g. 0/0) is missing and then cannot be JSON, as in Go.
                out.push(num_value(n)?);
            } else {
                out.push(view_to_value(name.view()));
            }
        }
    }
    Ok(Val::Own(Value::Array(out)))
}

fn view_to_value(v: View<'_>) -> Value {
    match v {
        View::Null => Value::Null,
        View::Bool(b) => Value::Bool(b),
        View::Num(n) => num_value(n).unwrap_or(Value::Null),
        View::Str(s) => Value::String(s.to_owned()),
        View::Arr(a) => Value::Array(a.to_vec()),
        View::Obj(o) => Value::Object(o.clone()),
    }
}

fn missing_some<'x, 'a: 'x>(args: &'x [Node], scope: Scope<'x>, cx: &mut Cx<'a>) -> R<'x> {
    let need = arg(args, 0, scope, cx)?;
    let names = arg(args, 1, scope, cx)?;
    eval_rest(args, 2, scope, cx)?;
    let need = go_int(arith_number(need.as_ref().map(Val::view))?);
    let Some(names) = names else {
        return Err(EvalError("missing_some needs a list of names".into()));
    };
    let View::Arr(items) = names.view() else {
        return Err(EvalError("missing_some: names must be an array".into()));
    };
    let mut out = Vec::new();
    let mut found = 0i64;
    for item in items {
        cx.charge(1)?;
        if get_var(View::of(item), scope.data, cx)?.is_null() {
            out.push(item.clone());
        } else {
            found += 1;
        }
    }
    if need > found {
        Ok(Val::Own(Value::Array(out)))
    } else {
        Ok(Val::Own(Value::Array(Vec::new())))
    }
}

/// `set` (v3.9.1 `setProperty`): `[object, key, value]` → a copy of the object with the key
/// set; fewer arguments give the first (or null); a non-object first argument is returned.
fn set<'x, 'a: 'x>(args: &'x [Node], scope: Scope<'x>, cx: &mut Cx<'a>) -> R<'x> {
    let mut vals = Vec::with_capacity(args.len());
    for node in args.iter() {
        vals.push(node.eval(scope, cx)?);
    }
    if vals.len() < 3 {
        return Ok(vals.into_iter().next().unwrap_or(Val::Null));
    }
    let mut vals = vals.into_iter();
    let object = vals.next().expect("three values");
    let key = vals.next().expect("three values");
    let value = vals.next().expect("three values");
    let View::Obj(_) = object.view() else {
        return Ok(object);
    };
    let View::Str(key) = key.view() else {
        return Err(EvalError("set: the key must be a string".into()));
    };
    let key = key.to_owned();
    let value = as_logic(value, scope, cx)?;
    let value = cx.owned(value)?;
    let Value::Object(mut map) = cx.owned(object)? else {
        unreachable!("checked above")
    };
    map.insert(key, value);
    Ok(Val::Own(Value::Object(map)))
}

/// `contains_all` / `contains_any` / `contains_none` (v3.9.1 `arrays.go`): two arrays, else
/// false (`contains_none`: true).
fn contains<'x, 'a: 'x>(op: Op, args: &'x [Node], scope: Scope<'x>, cx: &mut Cx<'a>) -> R<'x> {
    let a = arg(args, 0, scope, cx)?;
    let b = arg(args, 1, scope, cx)?;
    eval_rest(args, 2, scope, cx)?;
    let otherwise = Ok(Val::Bool(op == Op::ContainsNone));
    let (Some(a), Some(b)) = (a, b) else {
        return otherwise;
    };
    if args.len() != 2 {
        return otherwise;
    }
    let (View::Arr(search), View::Arr(wanted)) = (a.view(), b.view()) else {
        return otherwise;
    };
    cx.charge((search.len() as u64).saturating_mul(wanted.len() as u64) / 16)?;
    let has = |x: &Value| -> Result<bool, EvalError> {
        for item in search {
            if go_equal(View::of(item), View::of(x))? {
                return Ok(true);
            }
        }
        Ok(false)
    };
    let r = match op {
        Op::ContainsAll => {
            let mut all = true;
            for w in wanted {
                if !has(w)? {
                    all = false;
                    break;
                }
            }
            all
        }
        _ => {
            let mut any = false;
            for w in wanted {
                if has(w)? {
                    any = true;
                    break;
                }
            }
            if op == Op::ContainsAny {
                any
            } else {
                !any
            }
        }
    };
    Ok(Val::Bool(r))
}

/// `map`, `filter`, `all`, `none`, `some`, `reduce` (v3.9.1 `lists.go`).
fn iterate<'x, 'a: 'x>(op: Op, it: &'x IterNode, scope: Scope<'x>, cx: &mut Cx<'a>) -> R<'x> {
    if op == Op::Reduce {
        return reduce(it, scope, cx);
    }
    let subject = subject(&it.subject, scope, cx)?;
    let Some(subject) = subject else {
        return Ok(match op {
            Op::Map | Op::Filter => Val::Own(Value::Array(Vec::new())),
            _ => Val::Bool(op == Op::None),
        });
    };
    if matches!(op, Op::All | Op::None | Op::Some) && !subject.truthy() {
        return Ok(Val::Bool(op == Op::None));
    }
    let View::Arr(items) = subject.view() else {
        return Err(EvalError(format!(
            "cannot iterate over {}",
            kind_name(Some(subject.view()))
        )));
    };
    let Some(body) = &it.body else {
        return Err(EvalError(
            "missing the logic to apply to each element".into(),
        ));
    };
    match op {
        Op::Map => {
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                let s = Scope {
                    data: Data::Item(item),
                    subst: scope.subst,
                };
                let v = body.eval(s, cx)?;
                out.push(cx.owned(v)?);
            }
            Ok(Val::Own(Value::Array(out)))
        }
        Op::Filter => {
            let outer = Frame { scope };
            let mut out = Vec::new();
            for item in items {
                let s = Scope {
                    data: Data::Item(item),
                    subst: Some(&outer),
                };
                if body.eval(s, cx)?.truthy() {
                    cx.charge_copy(item)?;
                    out.push(item.clone());
                }
            }
            Ok(Val::Own(Value::Array(out)))
        }
        _ => {
            // all: stop at the first falsy; none/some: stop at the first truthy.
            let stop_on = op != Op::All;
            let outer = Frame { scope };
            for item in items {
                if !it.body_is_object {
                    return Err(EvalError(
                        "the logic applied to each element must be an object".into(),
                    ));
                }
                let hit = match op {
                    Op::None => {
                        let s = Scope {
                            data: Data::Item(item),
                            subst: Some(&outer),
                        };
                        apply_body(body, s, cx)?.truthy()
                    }
                    Op::Some => {
                        let own = Frame {
                            scope: Scope {
                                data: Data::Item(item),
                                subst: Some(&outer),
                            },
                        };
                        let s = Scope {
                            data: Data::Item(item),
                            subst: Some(&own),
                        };
                        apply_body(body, s, cx)?.truthy()
                    }
                    _ => {
                        let own = Frame {
                            scope: Scope {
                                data: Data::Item(item),
                                subst: scope.subst,
                            },
                        };
                        let s = Scope {
                            data: Data::Item(item),
                            subst: Some(&own),
                        };
                        apply_body(body, s, cx)?.truthy()
                    }
                };
                if hit == stop_on {
                    return Ok(Val::Bool(op == Op::Some));
                }
            }
            Ok(Val::Bool(op != Op::Some))
        }
    }
}

/// The array an iterating operator walks (v3.9.1 `extractSubject`); `None` for no subject.
/// A subject `var` that an enclosing predicate replaces by its value becomes a literal there:
/// an array is then data, an object is applied, anything else is no subject.
fn subject<'x, 'a: 'x>(
    subject: &'x Subject,
    scope: Scope<'x>,
    cx: &mut Cx<'a>,
) -> Result<Option<Val<'x>>, EvalError> {
    let node = match subject {
        Subject::None => return Ok(None),
        Subject::Data(v) => return Ok(Some(Val::Ref(v))),
        Subject::Expr(node) => node,
    };
    let substituted = match (node, scope.subst) {
        (Node::Var(var), Some(frame)) if var.subst => subst_var(var, frame, cx)?,
        (Node::VarDyn(var), Some(frame)) => subst_var_dyn(var, frame, cx)?,
        _ => None,
    };
    let v = match substituted {
        Some(v) => match v.view() {
            View::Arr(_) => v,
            View::Obj(m) if m.len() == 1 => interpret(v.view(), scope, cx)?,
            View::Obj(_) => v,
            _ => return Ok(None),
        },
        None => node.eval(scope, cx)?,
    };
    Ok(if v.is_null() { None } else { Some(v) })
}

/// Applies an `all`/`none`/`some` body to one element: a body that is a `var` replaced by a
/// value must have been replaced by an object (v3.9.1 applies the substituted body); when an
/// outer frame replaced it, the innermost frame substitutes into it again.
fn apply_body<'x, 'a: 'x>(body: &'x Node, scope: Scope<'x>, cx: &mut Cx<'a>) -> R<'x> {
    let Some(frame) = scope.subst else {
        return body.eval(scope, cx);
    };
    let again = Frame {
        scope: frame.scope.plain(),
    };
    match body {
        Node::Var(var) if var.subst => {
            if let Some(outer) = frame.scope.subst {
                if let Some(v) = subst_var(var, outer, cx)? {
                    return apply_value(v, scope, Some(&again), cx);
                }
            }
            let v = plain_var(var, frame.scope.plain(), cx)?;
            if !v.is_null() {
                return apply_value(v, scope, None, cx);
            }
            plain_var(var, scope.plain(), cx)
        }
        Node::VarDyn(var) => {
            if let Some(outer) = frame.scope.subst {
                if let Some(v) = subst_var_dyn(var, outer, cx)? {
                    return apply_value(v, scope, Some(&again), cx);
                }
            }
            let v = plain_var_dyn(var, frame.scope.plain(), cx)?;
            if !v.is_null() {
                return apply_value(v, scope, None, cx);
            }
            plain_var_dyn(var, scope.plain(), cx)
        }
        other => other.eval(scope, cx),
    }
}

/// The type v3.9.1 fixes for `reduce`'s accumulator from the initial value.
#[derive(Debug, Clone, Copy)]
pub(super) enum AccType {
    Bool,
    Num,
    Str,
}

impl AccType {
    /// The `valueType` v3.9.1 exposes.
    fn name(self) -> &'static str {
        match self {
            AccType::Bool => "bool",
            AccType::Num => "number",
            AccType::Str => "string",
        }
    }
}

fn reduce<'x, 'a: 'x>(it: &'x IterNode, scope: Scope<'x>, cx: &mut Cx<'a>) -> R<'x> {
    let Some(init) = &it.init else {
        return Ok(Val::Num(0.0));
    };
    let initial = init.eval(scope, cx)?;
    let (ty, mut acc) = match initial.view() {
        View::Bool(b) => (AccType::Bool, Value::Bool(b)),
        View::Num(n) => (AccType::Num, num_value(n)?),
        View::Str(s) => (AccType::Str, Value::String(s.to_owned())),
        other => {
            return Err(EvalError(format!(
                "reduce: initial value cannot be {}",
                kind_name(Some(other))
            )))
        }
    };
    let Some(subject) = subject(&it.subject, scope, cx)? else {
        return Ok(Val::Num(0.0));
    };
    let View::Arr(items) = subject.view() else {
        return Err(EvalError("reduce: not an array".into()));
    };
    let Some(body) = &it.body else {
        return Err(EvalError("reduce: missing the logic".into()));
    };
    for item in items {
        if item.is_null() {
            continue;
        }
        if !it.body_is_object {
            return Err(EvalError("reduce: the logic must be an object".into()));
        }
        let next = {
            let s = Scope {
                data: Data::Reduce {
                    current: item,
                    acc: &acc,
                    ty,
                },
                subst: scope.subst,
            };
            // Under an enclosing predicate's substitution the body may have become a literal,
            // which v3.9.1's `apply` refuses.
            let r = apply_body(body, s, cx)?;
            match ty {
                AccType::Bool => Value::Bool(r.truthy()),
                AccType::Num => num_value(arith_number(Some(r.view()))?)?,
                AccType::Str => {
                    let mut s = String::new();
                    push_go_string(&mut s, r.view())?;
                    Value::String(s)
                }
            }
        };
        acc = next;
    }
    Ok(Val::Own(acc))
}
