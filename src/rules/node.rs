//! The compiled form of a rule and the compiler that builds it from JSON once, at load.

use serde_json::Value;

use super::{CompileError, MAX_DEPTH, MAX_NODES};

/// One node of a compiled rule.
#[derive(Debug)]
pub(super) enum Node {
    /// A literal, returned by reference: scalars, arrays of literals, and objects that are not
    /// a single-key operation (the Go and JS engines treat those as data).
    Lit(Value),
    /// An array with at least one non-literal element.
    Arr(Box<[Node]>),
    /// `var` with a path known at load.
    Var(Box<VarNode>),
    /// `var` whose path is computed (`{"var": {"cat": [...]}}`).
    VarDyn(Box<[Node]>),
    /// Any other operator with its argument list.
    Op(Op, Box<[Node]>),
}

/// A `var` with a static path.
#[derive(Debug)]
pub(super) struct VarNode {
    /// What the path names.
    pub target: VarTarget,
    /// Used when the value is missing or null.
    pub default: Option<Node>,
}

/// The target of a static `var` path.
#[derive(Debug)]
pub(super) enum VarTarget {
    /// `""` or `[]`: the whole data (the context plus `$flagd`, or the current item).
    Whole,
    /// `null`: the current data if it is a scalar, else null (Go quirk).
    NullPath,
    /// A path with only empty segments, e.g. `"."`: always null (default ignored, as in Go).
    Empty,
    /// A dotted path of object keys / array indices.
    Path(Box<[Seg]>),
    /// `$flagd` as an object.
    FlagdObject,
    /// `$flagd.flagKey`.
    FlagdKey,
    /// `$flagd.timestamp`.
    FlagdTimestamp,
    /// Any other `$flagd.…` path: never present.
    FlagdMissing,
}

/// One path segment.
#[derive(Debug)]
pub(super) struct Seg {
    /// The object key.
    pub key: Box<str>,
    /// The array index, when the segment is all digits.
    pub index: Option<usize>,
}

impl Seg {
    pub(super) fn new(key: &str) -> Seg {
        let index = if !key.is_empty() && key.bytes().all(|b| b.is_ascii_digit()) {
            key.parse().ok()
        } else {
            None
        };
        Seg {
            key: key.into(),
            index,
        }
    }
}

/// Operators other than `var`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Op {
    If,
    Ternary,
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
            "?:" => Op::Ternary,
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
            _ => return None,
        })
    }

    /// Operators the Go engine dispatches after its "single primitive argument" shortcut: a
    /// scalar (non-array) argument makes them behave as the unary operation of that name,
    /// which for most of them is plain truthiness.
    fn scalar_arg_is_truthiness(self) -> bool {
        matches!(
            self,
            Op::Cmp(_) | Op::Mod | Op::Max | Op::Min | Op::In | Op::Ternary
        )
    }
}

/// Builds the node tree while counting nodes.
pub(super) struct Compiler {
    nodes: usize,
}

impl Compiler {
    pub(super) fn new() -> Compiler {
        Compiler { nodes: 0 }
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

    /// Compiles an operator's arguments: an array is the argument list, anything else is a
    /// single argument.
    fn args(&mut self, raw: &Value, depth: usize) -> Result<Box<[Node]>, CompileError> {
        match raw {
            Value::Array(items) => items
                .iter()
                .map(|item| self.compile(item, depth + 1))
                .collect::<Result<Vec<_>, _>>()
                .map(Vec::into_boxed_slice),
            other => Ok(vec![self.compile(other, depth + 1)?].into_boxed_slice()),
        }
    }

    fn operation(&mut self, name: &str, raw: &Value, depth: usize) -> Result<Node, CompileError> {
        if name == "var" {
            return self.var(raw, depth);
        }
        let op = Op::from_name(name)
            .ok_or_else(|| CompileError(format!("unknown operator \"{name}\"")))?;
        let is_scalar = matches!(raw, Value::Bool(_) | Value::Number(_) | Value::String(_));
        if is_scalar && op.scalar_arg_is_truthiness() {
            let arg = self.compile(raw, depth + 1)?;
            return Ok(Node::Op(Op::Truthy, vec![arg].into_boxed_slice()));
        }
        let args = self.args(raw, depth)?;
        Ok(Node::Op(op, args))
    }

    fn var(&mut self, raw: &Value, depth: usize) -> Result<Node, CompileError> {
        let (path, default) = match raw {
            Value::Array(items) => match items.as_slice() {
                [] => return Ok(var_node(VarTarget::Whole, None)),
                [path] => (path, None),
                // Go only honours a default when the array has exactly two elements.
                [path, default] => (path, Some(default)),
                [path, ..] => (path, None),
            },
            other => (other, None),
        };
        let default = default.map(|d| self.compile(d, depth + 1)).transpose()?;
        let target = match path {
            Value::String(s) => static_target(s),
            Value::Number(n) => {
                let mut s = String::new();
                super::val::push_number(&mut s, super::val::num_f64(n));
                static_target(&s)
            }
            Value::Null => VarTarget::NullPath,
            Value::Object(_) | Value::Array(_) => {
                let path = self.compile(path, depth + 1)?;
                let mut args = vec![path];
                args.extend(default);
                return Ok(Node::VarDyn(args.into_boxed_slice()));
            }
            Value::Bool(_) => {
                return Err(CompileError("var path must be a string or number".into()));
            }
        };
        Ok(var_node(target, default))
    }
}

fn var_node(target: VarTarget, default: Option<Node>) -> Node {
    Node::Var(Box::new(VarNode { target, default }))
}

/// Splits a dotted path at load, recognising `$flagd` paths.
pub(super) fn static_target(path: &str) -> VarTarget {
    if path.is_empty() {
        return VarTarget::Whole;
    }
    let segs: Vec<&str> = path.split('.').filter(|s| !s.is_empty()).collect();
    match segs.as_slice() {
        [] => VarTarget::Empty,
        ["$flagd"] => VarTarget::FlagdObject,
        ["$flagd", "flagKey"] => VarTarget::FlagdKey,
        ["$flagd", "timestamp"] => VarTarget::FlagdTimestamp,
        ["$flagd", ..] => VarTarget::FlagdMissing,
        segs => VarTarget::Path(segs.iter().map(|s| Seg::new(s)).collect()),
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
