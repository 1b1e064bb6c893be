//! The compiled form of a rule and the compiler that builds it from JSON once, at load.

use serde_json::Value;

use super::{CompileError, MAX_DEPTH, MAX_NODES};

/// One node of a compiled rule.
#[derive(Debug)]
pub(super) enum Node {
    /// A literal, returned by reference: scalars, arrays of literals, and objects that are not
    /// a single-key operation (the Go engine treats those as data).
    Lit(Value),
    /// An array with at least one non-literal element.
    Arr(Box<[Node]>),
    /// `var` with a path known at load.
    Var(Box<VarNode>),
    /// `var` whose path is computed (`{"var": {"cat": [...]}}`): the node's value is the path
    /// (or `[path, default]`) as v3.9.1's `getVar` receives it.
    VarDyn(Box<VarDyn>),
    /// An operator with an argument array as written.
    Op(Op, Box<[Node]>),
    /// An operator whose arguments are not an array as written (`{"max": {"var": "nums"}}`,
    /// `{"%": -2.5}`): v3.9.1 evaluates them and uses the value as the argument list.
    OpDyn(Op, Box<Node>),
    /// `map`, `filter`, `reduce`, `all`, `none`, `some`.
    Iter(Op, Box<IterNode>),
    /// An operator that takes its arguments as written (`if`, `and`, `or`, the iterating
    /// ones) given a `var` instead of an array: an error, unless an enclosing predicate
    /// replaces the `var` by an array first (v3.9.1 `solveVars`), which is then the list.
    SubstArgs(Box<SubstArgs>),
    /// Fails when evaluated (an unknown operator, a malformed argument list): v3.9.1 only
    /// notices these when it reaches them.
    Fail(Box<str>),
}

/// See [`Node::SubstArgs`].
#[derive(Debug)]
pub(super) struct SubstArgs {
    /// The operator's name.
    pub name: Box<str>,
    /// The `var` given as its arguments.
    pub var: Node,
}

/// A `var` with a static path.
#[derive(Debug)]
pub(super) struct VarNode {
    /// What the path names.
    pub target: VarTarget,
    /// Used when the value is missing or null (only a two-element `[path, default]`).
    pub default: Option<Node>,
    /// Whether `filter`/`none`/`some`/`all` replace it with the outer value first (v3.9.1's
    /// `solveVars` skips only string paths that are empty or start with `.`).
    pub subst: bool,
}

/// A `var` with a computed path.
#[derive(Debug)]
pub(super) struct VarDyn {
    /// Evaluates to the path, or to `[path, default]`.
    pub path: Node,
}

/// The target of a static `var` path.
#[derive(Debug)]
pub(super) enum VarTarget {
    /// `""`, `[]` or a path of only dots: the whole data (the context plus `$flagd`, or the
    /// current item).
    Whole,
    /// `null`: the current data if it is a scalar, else null.
    NullPath,
    /// A dotted path of object keys / array indices (empty segments dropped).
    Path(Box<[Seg]>),
    /// A path starting with `$flagd`: at the root it reads flagd's `$flagd` object (which
    /// replaces any `$flagd` of the request); inside an item it is an ordinary path.
    Flagd(Flagd, Box<[Seg]>),
}

/// What a `$flagd` path names at the root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Flagd {
    /// `$flagd` itself.
    Object,
    /// `$flagd.flagKey`.
    Key,
    /// `$flagd.timestamp`.
    Timestamp,
    /// Anything below: absent (the values are scalars, other keys do not exist).
    Missing,
}

/// One path segment.
#[derive(Debug)]
pub(super) struct Seg {
    /// The object key.
    pub key: Box<str>,
    /// The array index v3.9.1 derives from the segment: `int(ParseFloat(seg))` with errors
    /// read as 0 (so `x` selects the first element); negative means out of range.
    pub index: i64,
}

impl Seg {
    pub(super) fn new(key: &str) -> Seg {
        let index = if !key.is_empty() && key.len() <= 18 && key.bytes().all(|b| b.is_ascii_digit())
        {
            key.parse().unwrap_or(-1)
        } else {
            super::val::go_int(super::val::str_number(key))
        };
        Seg {
            key: key.into(),
            index,
        }
    }
}

/// The parts of an iterating operator.
#[derive(Debug)]
pub(super) struct IterNode {
    /// The array walked.
    pub subject: Subject,
    /// The logic applied to each element; `None` when not given.
    pub body: Option<Node>,
    /// Whether the body is an object as written (`all`/`none`/`some`/`reduce` apply it as an
    /// operation and fail on anything else).
    pub body_is_object: bool,
    /// `reduce`'s initial value.
    pub init: Option<Node>,
}

/// The subject of an iterating operator as v3.9.1's `extractSubject` sees it.
#[derive(Debug)]
pub(super) enum Subject {
    /// A scalar or null as written: no subject.
    None,
    /// An array as written: data, not evaluated.
    Data(Value),
    /// An object: evaluated.
    Expr(Node),
}

/// Operators other than `var`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Op {
    If,
    And,
    Or,
    Not,
    Truthy,
    Cmp(Cmp),
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Max,
    Min,
    Abs,
    In,
    Cat,
    Substr,
    Merge,
    Missing,
    MissingSome,
    Map,
    Filter,
    Reduce,
    All,
    None,
    Some,
    Fractional,
    SemVer,
    StartsWith,
    EndsWith,
    Set,
    ContainsAll,
    ContainsAny,
    ContainsNone,
}

/// Comparison operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Cmp {
    Eq,
    StrictEq,
    Ne,
    StrictNe,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Op {
    fn from_name(name: &str) -> Option<Op> {
        Some(match name {
            "if" => Op::If,
            "?:" => Op::If,
            "and" => Op::And,
            "or" => Op::Or,
            "!" => Op::Not,
            "!!" => Op::Truthy,
            "==" => Op::Cmp(Cmp::Eq),
            "===" => Op::Cmp(Cmp::StrictEq),
            "!=" => Op::Cmp(Cmp::Ne),
            "!==" => Op::Cmp(Cmp::StrictNe),
            "<" => Op::Cmp(Cmp::Lt),
            "<=" => Op::Cmp(Cmp::Le),
            ">" => Op::Cmp(Cmp::Gt),
            ">=" => Op::Cmp(Cmp::Ge),
            "+" => Op::Add,
            "-" => Op::Sub,
            "*" => Op::Mul,
            "/" => Op::Div,
            "%" => Op::Mod,
            "max" => Op::Max,
            "min" => Op::Min,
            "abs" => Op::Abs,
            "in" => Op::In,
            "cat" => Op::Cat,
            "substr" => Op::Substr,
            "merge" => Op::Merge,
            "missing" => Op::Missing,
            "missing_some" => Op::MissingSome,
            "map" => Op::Map,
            "filter" => Op::Filter,
            "reduce" => Op::Reduce,
            "all" => Op::All,
            "none" => Op::None,
            "some" => Op::Some,
            "fractional" => Op::Fractional,
            "sem_ver" => Op::SemVer,
            "starts_with" => Op::StartsWith,
            "ends_with" => Op::EndsWith,
            "set" => Op::Set,
            "contains_all" => Op::ContainsAll,
            "contains_any" => Op::ContainsAny,
            "contains_none" => Op::ContainsNone,
            _ => return None,
        })
    }

    /// Operators that take their argument array as written, without evaluating it first
    /// (v3.9.1 type-asserts the raw value to an array, so anything else fails).
    fn lazy(self) -> bool {
        matches!(self, Op::If | Op::And | Op::Or)
    }

    fn iterating(self) -> bool {
        matches!(
            self,
            Op::Map | Op::Filter | Op::Reduce | Op::All | Op::None | Op::Some
        )
    }
}

/// Builds the node tree while counting nodes.
pub(super) struct Compiler {
    nodes: usize,
    /// The first operator name this engine does not know (it fails only when evaluated).
    pub(super) unknown: Option<Box<str>>,
    /// Whether some node may read `$flagd.timestamp` (see [`Compiler::note_target`]).
    pub(super) reads_clock: bool,
}

impl Compiler {
    pub(super) fn new() -> Compiler {
        Compiler {
            nodes: 0,
            unknown: None,
            reads_clock: false,
        }
    }

    /// Records whether a `var` with `target` may read the evaluation time. Only two targets
    /// can at the root: `$flagd.timestamp` itself and the whole `$flagd` object, plus the whole
    /// data (which contains `$flagd`). A target inside an item is an ordinary path, but the
    /// same node may also run at the root, so the test ignores the scope (conservative).
    fn note_target(&mut self, target: &VarTarget) {
        if matches!(
            target,
            VarTarget::Whole | VarTarget::Flagd(Flagd::Object | Flagd::Timestamp, _)
        ) {
            self.reads_clock = true;
        }
    }

    pub(super) fn compile(&mut self, v: &Value, depth: usize) -> Result<Node, CompileError> {
        if depth > MAX_DEPTH {
            return Err(CompileError(format!(
                "rule is nested deeper than {MAX_DEPTH} levels"
            )));
        }
        self.nodes += 1;
        if self.nodes > MAX_NODES {
            return Err(CompileError(format!(
                "rule has more than {MAX_NODES} nodes"
            )));
        }
        match v {
            Value::Object(map) if map.len() == 1 => {
                let (name, args) = map.iter().next().expect("one entry");
                self.operation(name, args, depth)
            }
            Value::Object(_) => {
                check_literal_depth(v, depth)?;
                Ok(Node::Lit(v.clone()))
            }
            Value::Array(items) => {
                let nodes = items
                    .iter()
                    .map(|item| self.compile(item, depth + 1))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(array_node(nodes))
            }
            scalar => Ok(Node::Lit(scalar.clone())),
        }
    }

    fn list(&mut self, items: &[Value], depth: usize) -> Result<Box<[Node]>, CompileError> {
        items
            .iter()
            .map(|item| self.compile(item, depth + 1))
            .collect::<Result<Vec<_>, _>>()
            .map(Vec::into_boxed_slice)
    }

    fn operation(&mut self, name: &str, raw: &Value, depth: usize) -> Result<Node, CompileError> {
        if name == "var" {
            return self.var(raw, depth);
        }
        let Some(op) = Op::from_name(name) else {
            if self.unknown.is_none() {
                self.unknown = Some(name.into());
            }
            // Still compile the arguments, so the depth and size limits hold.
            self.compile(raw, depth + 1)?;
            return Ok(Node::Fail(
                format!("The operator \"{name}\" is not supported").into(),
            ));
        };
        // `missing` and `missing_some` look names up at run time; a name computed at run time
        // could be `$flagd.timestamp` (only its presence matters, but stay conservative).
        if matches!(op, Op::Missing | Op::MissingSome) {
            self.reads_clock = true;
        }
        let raw_is_var = raw
            .as_object()
            .is_some_and(|m| m.len() == 1 && m.contains_key("var"));
        if raw_is_var && (op.lazy() || op.iterating()) {
            let var = self.compile(raw, depth + 1)?;
            return Ok(Node::SubstArgs(Box::new(SubstArgs {
                name: name.into(),
                var,
            })));
        }
        if op.iterating() {
            return self.iterating(op, raw, depth);
        }
        match raw {
            Value::Array(items) => Ok(Node::Op(op, self.list(items, depth)?)),
            _ if op.lazy() => {
                self.compile(raw, depth + 1)?;
                Ok(Node::Fail(
                    format!("{name}: the arguments must be an array").into(),
                ))
            }
            other => Ok(Node::OpDyn(op, Box::new(self.compile(other, depth + 1)?))),
        }
    }

    fn iterating(&mut self, op: Op, raw: &Value, depth: usize) -> Result<Node, CompileError> {
        let Value::Array(items) = raw else {
            self.compile(raw, depth + 1)?;
            return Ok(Node::Fail(
                "the arguments of an iterating operator must be an array".into(),
            ));
        };
        match (op, items.len()) {
            (Op::Map | Op::Filter, n) if n < 2 => return Ok(Node::Lit(Value::Array(Vec::new()))),
            (Op::Reduce, n) if n < 3 => return Ok(Node::Lit(Value::from(0))),
            (_, 0) => return Ok(Node::Fail("missing the array to iterate over".into())),
            _ => {}
        }
        let subject = match &items[0] {
            Value::Array(_) => {
                check_literal_depth(&items[0], depth + 1)?;
                Subject::Data(items[0].clone())
            }
            Value::Object(_) => Subject::Expr(self.compile(&items[0], depth + 1)?),
            _ => Subject::None,
        };
        let body = items
            .get(1)
            .map(|b| self.compile(b, depth + 1))
            .transpose()?;
        let body_is_object = items.get(1).is_some_and(Value::is_object);
        let init = match items.get(2) {
            Some(v) if op == Op::Reduce => Some(match v {
                Value::Object(_) => self.compile(v, depth + 1)?,
                other => {
                    check_literal_depth(other, depth + 1)?;
                    Node::Lit(other.clone())
                }
            }),
            _ => None,
        };
        // Arguments past those used are never looked at by v3.9.1.
        Ok(Node::Iter(
            op,
            Box::new(IterNode {
                subject,
                body,
                body_is_object,
                init,
            }),
        ))
    }

    fn var(&mut self, raw: &Value, depth: usize) -> Result<Node, CompileError> {
        let node = self.var_inner(raw, depth)?;
        match &node {
            Node::Var(var) => self.note_target(&var.target),
            // A path computed at run time may name anything, `$flagd.timestamp` included.
            _ => self.reads_clock = true,
        }
        Ok(node)
    }

    fn var_inner(&mut self, raw: &Value, depth: usize) -> Result<Node, CompileError> {
        let dynamic = |c: &mut Compiler| -> Result<Node, CompileError> {
            let path = c.compile(raw, depth + 1)?;
            Ok(Node::VarDyn(Box::new(VarDyn { path })))
        };
        match raw {
            Value::String(s) => Ok(var_node(
                static_target(s),
                None,
                !(s.is_empty() || s.starts_with('.')),
            )),
            Value::Number(n) => {
                let mut s = String::new();
                super::val::push_number(&mut s, super::val::num_f64(n));
                Ok(var_node(static_target(&s), None, true))
            }
            Value::Null => Ok(var_node(VarTarget::NullPath, None, true)),
            Value::Array(items) => match items.as_slice() {
                [] => Ok(var_node(VarTarget::Whole, None, true)),
                [Value::String(p)] => Ok(var_node(static_target(p), None, true)),
                [Value::String(p), default] => {
                    let default = self.compile(default, depth + 1)?;
                    Ok(var_node(static_target(p), Some(default), true))
                }
                _ => dynamic(self),
            },
            Value::Object(_) | Value::Bool(_) => dynamic(self),
        }
    }
}

fn var_node(target: VarTarget, default: Option<Node>, subst: bool) -> Node {
    Node::Var(Box::new(VarNode {
        target,
        default,
        subst,
    }))
}

/// Splits a dotted path at load (empty segments are skipped, as v3.9.1 does), recognising
/// `$flagd` paths.
pub(super) fn static_target(path: &str) -> VarTarget {
    let segs: Vec<&str> = path.split('.').filter(|s| !s.is_empty()).collect();
    if segs.is_empty() {
        return VarTarget::Whole;
    }
    let owned = segs.iter().map(|s| Seg::new(s)).collect();
    match segs.as_slice() {
        ["$flagd"] => VarTarget::Flagd(Flagd::Object, owned),
        ["$flagd", "flagKey"] => VarTarget::Flagd(Flagd::Key, owned),
        ["$flagd", "timestamp"] => VarTarget::Flagd(Flagd::Timestamp, owned),
        ["$flagd", ..] => VarTarget::Flagd(Flagd::Missing, owned),
        _ => VarTarget::Path(owned),
    }
}

/// An array node, folded into a literal when every element is literal (so evaluating it
/// borrows instead of allocating).
fn array_node(nodes: Vec<Node>) -> Node {
    if nodes.iter().all(|n| matches!(n, Node::Lit(_))) {
        let values = nodes
            .into_iter()
            .map(|n| match n {
                Node::Lit(v) => v,
                _ => unreachable!("checked above"),
            })
            .collect();
        Node::Lit(Value::Array(values))
    } else {
        Node::Arr(nodes.into_boxed_slice())
    }
}

/// Refuses literal data nested too deeply (so cloning and dropping it cannot overflow).
fn check_literal_depth(v: &Value, depth: usize) -> Result<(), CompileError> {
    // Iterative walk: the input itself may be arbitrarily deep.
    let mut stack = vec![(v, depth)];
    while let Some((v, d)) = stack.pop() {
        if d > MAX_DEPTH {
            return Err(CompileError(format!(
                "rule is nested deeper than {MAX_DEPTH} levels"
            )));
        }
        match v {
            Value::Array(items) => stack.extend(items.iter().map(|i| (i, d + 1))),
            Value::Object(map) => stack.extend(map.values().map(|i| (i, d + 1))),
            _ => {}
        }
    }
    Ok(())
}
