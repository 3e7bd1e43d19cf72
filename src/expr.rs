//! `expr` conditions: boolean expressions over several tags, compiled and
//! run by [rhai](https://rhai.rs) in a sandbox.
//!
//! This module knows tags and values only: the caller says what kind each
//! full tag name is (a closure giving an [`ExprType`]). `fieldgate check`
//! and the rules engine both answer from the configured devices and
//! compile with the same engine, so a rule that passes the check is the
//! rule that runs.
//!
//! # The language seen by a rule
//!
//! Tags are written `device.tag`. Each device an expression names becomes
//! a variable holding an object map of the tags it reads, so
//! `pump1.current > 20 && !pump1.running` is plain rhai property access and
//! rhai's error positions point into the text the user wrote. Every number
//! is a float (`f64`) whatever its register type, so an expression has the
//! same types at `fieldgate check` time as at run time (a scaled `u16` is a
//! float at run time anyway); bits are `bool`, strings are strings. Integer
//! literals mix freely with floats (`pump1.mode == 3`); bitwise operators
//! need an integer, and bind more loosely than comparisons in rhai:
//! `(pump1.status.to_int() & 4) != 0`.
//!
//! # Sandbox and cost
//!
//! The engine is [`rhai::Engine::new_raw`] plus the arithmetic, logic and
//! basic maths packages (`abs`, `min`, `max`, `floor`, `sqrt`…): no
//! printing, no strings beyond comparison, no `eval`, no loops, no
//! closures, no modules, no clock. An expression is compiled once with
//! `compile_expression_with_scope` (statements refused; a name that is not
//! a device is an error, not an empty variable) and runs within
//! [`MAX_OPERATIONS`] operations and [`MAX_DEPTH`] levels of nesting;
//! beyond that it fails instead of running on. A failed evaluation keeps
//! the rule's last verdict (the engine counts failures).
//!
//! Comparing values of different kinds (`pump1.running > 20`,
//! `pump1.mode == "3"`) is a check error, where rhai would quietly answer
//! `false`: a rule that can never fire is a mistake worth reporting. (At
//! run time the fast path answers `false`, see [`ExprEngine`].)
//!
//! # Checking
//!
//! [`check`] runs at `fieldgate check` time: every tag must exist, the
//! text must parse, and the expression is evaluated twice against typed
//! dummy values (all `false`/`0.0`/`""`, then all `true`/`1.0`/`"x"`, so
//! both sides of `&&` and `||` get evaluated) and must give a bool. An
//! arithmetic failure on dummy values (integer division by zero) is not
//! reported: it depends on the data.

use std::fmt;

use rhai::packages::{ArithmeticPackage, BasicMathPackage, LogicPackage, Package};
use rhai::{AST, Dynamic, EvalAltResult, FLOAT, INT, ImmutableString, Map, Scope};

use crate::tag::{DataType, Value};

/// Most rhai operations one evaluation may take.
pub const MAX_OPERATIONS: u64 = 10_000;

/// Deepest nesting of an expression.
pub const MAX_DEPTH: usize = 32;

/// Longest string an expression may build.
const MAX_STRING: usize = 4_096;

/// The kind of value a tag gives an expression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExprType {
    /// A bit: `bool`.
    Bool,
    /// Any number: `f64`.
    Number,
    /// A string.
    Text,
}

impl ExprType {
    /// The kind of a tag of type `data_type`.
    pub fn of(data_type: DataType) -> ExprType {
        match data_type {
            DataType::Bool | DataType::Bit(_) => ExprType::Bool,
            DataType::String(_) => ExprType::Text,
            _ => ExprType::Number,
        }
    }

    fn dummy(self, high: bool) -> Value {
        match self {
            ExprType::Bool => Value::Bool(high),
            ExprType::Number => Value::Float(if high { 1.0 } else { 0.0 }),
            ExprType::Text => Value::Text(if high { "x" } else { "" }.to_owned()),
        }
    }
}

impl fmt::Display for ExprType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ExprType::Bool => "bool",
            ExprType::Number => "number",
            ExprType::Text => "string",
        })
    }
}

/// Why an expression cannot be used, or failed to run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExprError {
    /// It names a tag that does not exist.
    #[error("expr \"{expr}\": unknown tag \"{tag}\"")]
    UnknownTag {
        /// The expression.
        expr: String,
        /// The full tag name.
        tag: String,
    },
    /// It names no tag at all.
    #[error("expr \"{expr}\": reads no tag (write tags as device.tag)")]
    NoTags {
        /// The expression.
        expr: String,
    },
    /// rhai refused to compile it.
    #[error("expr \"{expr}\": {message}")]
    Parse {
        /// The expression.
        expr: String,
        /// rhai's message, with the position.
        message: String,
    },
    /// Evaluation failed (a type error at check time; at run time also the
    /// operation limit).
    #[error("expr \"{expr}\": {message}")]
    Eval {
        /// The expression.
        expr: String,
        /// rhai's message, with the position.
        message: String,
    },
    /// It gives something other than true or false.
    #[error("expr \"{expr}\" gives {value} (a {type_name}), not true or false")]
    NotBool {
        /// The expression.
        expr: String,
        /// The value it gave on dummy inputs.
        value: String,
        /// Its rhai type.
        type_name: String,
    },
}

/// Full tag names (`device.tag`) an expression reads, in order of first
/// appearance. `fieldgate check` uses the same scan, so the config and the
/// engine agree on what an expression reads. Numbers (`1.5`), string
/// literals and method calls (`a.b.abs()` reads `a.b`) are not tags.
pub fn referenced_tags(expr: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c == b'"' || c == b'\'' {
            // Skip a string or character literal.
            i += 1;
            while i < bytes.len() && bytes[i] != c {
                i += 1;
            }
            i += 1;
            continue;
        }
        if c.is_ascii_alphanumeric() || c == b'_' {
            let start = i;
            while i < bytes.len()
                && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_' || bytes[i] == b'.')
            {
                i += 1;
            }
            let token = &expr[start..i];
            let mut parts = token.split('.');
            if let (Some(dev), Some(tag)) = (parts.next(), parts.next()) {
                let numeric =
                    token.parse::<f64>().is_ok() || dev.bytes().all(|b| b.is_ascii_digit());
                if !numeric && !dev.is_empty() && !tag.is_empty() {
                    let full = format!("{dev}.{tag}");
                    if !out.contains(&full) {
                        out.push(full);
                    }
                }
            }
            continue;
        }
        i += 1;
    }
    out
}

/// Checks an expression against the known tags (`known` gives a full tag
/// name's kind, or `None` for an unknown tag). The error text quotes the
/// expression and rhai's message.
pub fn check(expr: &str, known: impl Fn(&str) -> Option<ExprType>) -> Result<(), String> {
    ExprEngine::new()
        .compile(expr, known)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// A compiled expression and the tags it reads.
#[derive(Debug, Clone)]
pub struct CompiledExpr {
    text: String,
    ast: AST,
    /// Full names of the tags read, in the order values are passed in.
    tags: Vec<String>,
    /// Per device variable: its name and its map's keys, each with the
    /// index of its value in `tags`.
    devices: Vec<(String, Vec<(String, usize)>)>,
    /// The device maps, kept between evaluations and overwritten in place:
    /// building them afresh took about a quarter of an evaluation's time.
    scope: Scope<'static>,
}

impl CompiledExpr {
    /// The expression's text.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Full names of the tags it reads; [`ExprEngine::eval`] takes their
    /// values in this order.
    pub fn tags(&self) -> &[String] {
        &self.tags
    }

    /// Puts `values` (aligned with `tags`) into the device maps of the
    /// scope, building them on first use.
    fn fill(&mut self, values: &[&Value]) {
        if self.scope.len() != self.devices.len() {
            self.scope.clear();
            for (device, _) in &self.devices {
                self.scope.push(device.clone(), Map::new());
            }
        }
        for (device, keys) in &self.devices {
            let Some(var) = self.scope.get_mut(device) else {
                continue;
            };
            let Ok(mut map) = var.as_map_mut() else {
                continue;
            };
            for (key, i) in keys {
                if let Some(v) = values.get(*i) {
                    match map.get_mut(key.as_str()) {
                        Some(slot) => *slot = dynamic(v),
                        None => {
                            map.insert(key.as_str().into(), dynamic(v));
                        }
                    }
                }
            }
        }
    }
}

/// The sandboxed rhai engines shared by every `expr` rule.
///
/// Two engines with the same packages and limits: `checker` compiles and
/// checks, refusing comparisons of different kinds; `runner` evaluates
/// with rhai's fast built-in operators, which answer such comparisons with
/// `false` but take half the time (about 0.4 µs an evaluation instead of
/// 0.8 µs, `benches/rules.rs`). The check has already refused every mismatch on the paths the
/// dummy values take; one hidden in a branch they never reach evaluates
/// to `false` at run time.
pub struct ExprEngine {
    checker: rhai::Engine,
    runner: rhai::Engine,
}

impl fmt::Debug for ExprEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ExprEngine")
    }
}

impl Default for ExprEngine {
    fn default() -> ExprEngine {
        ExprEngine::new()
    }
}

impl ExprEngine {
    /// The sandbox described in the module docs.
    pub fn new() -> ExprEngine {
        ExprEngine {
            checker: sandbox(true),
            runner: sandbox(false),
        }
    }

    /// Compiles and [`check`]s `expr`.
    pub fn compile(
        &self,
        expr: &str,
        known: impl Fn(&str) -> Option<ExprType>,
    ) -> Result<CompiledExpr, ExprError> {
        let tags = referenced_tags(expr);
        if tags.is_empty() {
            return Err(ExprError::NoTags {
                expr: expr.to_owned(),
            });
        }
        let mut types = Vec::with_capacity(tags.len());
        for tag in &tags {
            match known(tag) {
                Some(t) => types.push(t),
                None => {
                    return Err(ExprError::UnknownTag {
                        expr: expr.to_owned(),
                        tag: tag.clone(),
                    });
                }
            }
        }
        let mut devices: Vec<(String, Vec<(String, usize)>)> = Vec::new();
        for (i, full) in tags.iter().enumerate() {
            let (dev, key) = full.split_once('.').unwrap_or((full, ""));
            match devices.iter_mut().find(|(d, _)| d == dev) {
                Some((_, keys)) => keys.push((key.to_owned(), i)),
                None => devices.push((dev.to_owned(), vec![(key.to_owned(), i)])),
            }
        }
        let mut compiled = CompiledExpr {
            text: expr.to_owned(),
            ast: AST::empty(),
            tags,
            devices,
            scope: Scope::new(),
        };
        let low: Vec<Value> = types.iter().map(|t| t.dummy(false)).collect();
        let high: Vec<Value> = types.iter().map(|t| t.dummy(true)).collect();
        let low_refs: Vec<&Value> = low.iter().collect();
        compiled.fill(&low_refs);
        compiled.ast = self
            .checker
            .compile_expression_with_scope(&compiled.scope, expr)
            .map_err(|e| ExprError::Parse {
                expr: expr.to_owned(),
                message: e.to_string(),
            })?;
        for dummies in [&low, &high] {
            let refs: Vec<&Value> = dummies.iter().collect();
            match run(&self.checker, &mut compiled, &refs) {
                Ok(v) if v.is_bool() => {}
                Ok(v) => {
                    return Err(ExprError::NotBool {
                        expr: expr.to_owned(),
                        value: v.to_string(),
                        type_name: v.type_name().to_owned(),
                    });
                }
                Err(e) if matches!(*e, EvalAltResult::ErrorArithmetic(..)) => {}
                Err(e) => {
                    return Err(ExprError::Eval {
                        expr: expr.to_owned(),
                        message: e.to_string(),
                    });
                }
            }
        }
        Ok(compiled)
    }

    /// Evaluates `compiled` with `values`, one per entry of
    /// [`CompiledExpr::tags`].
    pub fn eval(&self, compiled: &mut CompiledExpr, values: &[&Value]) -> Result<bool, ExprError> {
        match run(&self.runner, compiled, values) {
            Ok(v) => v.as_bool().map_err(|type_name| ExprError::NotBool {
                expr: compiled.text.clone(),
                value: v.to_string(),
                type_name: type_name.to_owned(),
            }),
            Err(e) => Err(ExprError::Eval {
                expr: compiled.text.clone(),
                message: e.to_string(),
            }),
        }
    }
}

fn run(
    engine: &rhai::Engine,
    compiled: &mut CompiledExpr,
    values: &[&Value],
) -> Result<Dynamic, Box<EvalAltResult>> {
    compiled.fill(values);
    engine.eval_ast_with_scope::<Dynamic>(&mut compiled.scope, &compiled.ast)
}

/// A sandboxed engine; `strict` refuses comparisons of different kinds.
fn sandbox(strict: bool) -> rhai::Engine {
    let mut engine = rhai::Engine::new_raw();
    ArithmeticPackage::new().register_into_engine(&mut engine);
    LogicPackage::new().register_into_engine(&mut engine);
    BasicMathPackage::new().register_into_engine(&mut engine);
    engine
        .set_max_operations(MAX_OPERATIONS)
        .set_max_expr_depths(MAX_DEPTH, MAX_DEPTH)
        .set_max_string_size(MAX_STRING)
        .set_max_array_size(256)
        .set_max_map_size(256)
        .set_allow_looping(false)
        .set_allow_anonymous_fn(false)
        .set_allow_statement_expression(false)
        .set_strict_variables(true)
        .set_fail_on_invalid_map_property(true);
    engine.disable_symbol("eval");
    if strict {
        // Registered functions override built-in operators only when the
        // fast path is off.
        engine.set_fast_operators(false);
        refuse_mixed_comparisons(&mut engine);
    }
    engine
}

/// A tag's value as the expression sees it: numbers as floats.
fn dynamic(v: &Value) -> Dynamic {
    match v {
        Value::Bool(b) => Dynamic::from_bool(*b),
        Value::Text(s) => Dynamic::from(ImmutableString::from(s.as_str())),
        other => Dynamic::from_float(other.as_f64().unwrap_or(f64::NAN)),
    }
}

/// Registers, for every pair of different kinds among bool, number and
/// string (and `()`, what a missing value would be), comparison operators
/// that fail with a clear message instead of rhai's silent `false`.
fn refuse_mixed_comparisons(engine: &mut rhai::Engine) {
    macro_rules! refuse {
        ($a:ty, $an:literal, $b:ty, $bn:literal) => {
            for op in ["==", "!=", ">", ">=", "<", "<="] {
                engine.register_fn(
                    op,
                    move |_: $a, _: $b| -> Result<bool, Box<EvalAltResult>> {
                        Err(format!("cannot compare a {} with a {} ({op})", $an, $bn).into())
                    },
                );
                engine.register_fn(
                    op,
                    move |_: $b, _: $a| -> Result<bool, Box<EvalAltResult>> {
                        Err(format!("cannot compare a {} with a {} ({op})", $bn, $an).into())
                    },
                );
            }
        };
    }
    refuse!(bool, "bool", INT, "number");
    refuse!(bool, "bool", FLOAT, "number");
    refuse!(bool, "bool", ImmutableString, "string");
    refuse!(bool, "bool", (), "missing value");
    refuse!(INT, "number", ImmutableString, "string");
    refuse!(FLOAT, "number", ImmutableString, "string");
    refuse!(INT, "number", (), "missing value");
    refuse!(FLOAT, "number", (), "missing value");
    refuse!(ImmutableString, "string", (), "missing value");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn referenced_tags_skips_numbers_strings_and_methods() {
        assert_eq!(
            referenced_tags("pump1.current > 20 && !pump1.running"),
            vec!["pump1.current", "pump1.running"]
        );
        assert_eq!(
            referenced_tags("a.b + 1.5 > c.d.abs() && s == \"x.y\""),
            vec!["a.b", "c.d"]
        );
        assert!(referenced_tags("1.5 > 2").is_empty());
    }

    fn known(full: &str) -> Option<ExprType> {
        match full {
            "pump1.current" | "pump1.mode" | "pump2.current" => Some(ExprType::Number),
            "pump1.running" | "pump2.fault" => Some(ExprType::Bool),
            "pump1.state" => Some(ExprType::Text),
            _ => None,
        }
    }

    fn eval(expr: &str, values: &[Value]) -> Result<bool, ExprError> {
        let engine = ExprEngine::new();
        let mut compiled = engine.compile(expr, known)?;
        let refs: Vec<&Value> = values.iter().collect();
        engine.eval(&mut compiled, &refs)
    }

    #[test]
    fn evaluates_over_several_tags() {
        let e = "pump1.current > 20 && !pump1.running";
        assert_eq!(eval(e, &[Value::Float(25.0), Value::Bool(false)]), Ok(true));
        assert_eq!(eval(e, &[Value::Float(25.0), Value::Bool(true)]), Ok(false));
        // Integer register values are numbers like any other.
        assert_eq!(eval(e, &[Value::Int(21), Value::Bool(false)]), Ok(true));
        assert_eq!(eval("pump1.mode == 3", &[Value::UInt(3)]), Ok(true));
        assert_eq!(
            eval(
                "abs(pump1.current - pump2.current) > 5.0 || pump2.fault",
                &[Value::Float(10.0), Value::Float(12.0), Value::Bool(true)]
            ),
            Ok(true)
        );
        assert_eq!(
            eval(
                "pump1.state == \"FAULT\" && (pump1.mode.to_int() & 2) != 0",
                &[Value::Text("FAULT".into()), Value::Float(6.0)]
            ),
            Ok(true)
        );
    }

    #[test]
    fn tags_are_listed_in_order() {
        let engine = ExprEngine::new();
        let c = engine
            .compile("pump2.current > pump1.current && pump2.fault", known)
            .unwrap();
        assert_eq!(c.tags(), ["pump2.current", "pump1.current", "pump2.fault"]);
    }

    #[test]
    fn check_reports_unknown_tags() {
        let err = check("pump1.current > 20 && pump1.nope", known).unwrap_err();
        assert_eq!(
            err,
            "expr \"pump1.current > 20 && pump1.nope\": unknown tag \"pump1.nope\""
        );
        let err = check("1 > 2", known).unwrap_err();
        assert!(err.contains("reads no tag"), "{err}");
        // A bare name that is not a device is rhai's "undefined variable".
        let err = check("pump1.current > limit", known).unwrap_err();
        assert!(err.contains("limit"), "{err}");
    }

    #[test]
    fn check_reports_results_that_are_not_bool() {
        let err = check("pump1.current + 1", known).unwrap_err();
        assert!(err.contains("not true or false"), "{err}");
        assert!(
            err.starts_with("expr \"pump1.current + 1\" gives 1"),
            "{err}"
        );
        let err = check("pump1.state", known).unwrap_err();
        assert!(err.contains("not true or false"), "{err}");
    }

    #[test]
    fn check_reports_type_errors() {
        for (expr, needle) in [
            ("pump1.running > 20", "cannot compare a bool with a number"),
            ("pump1.running == 0", "cannot compare a bool with a number"),
            ("pump1.state == 3", "cannot compare a string with a number"),
            (
                "pump1.current == \"3\"",
                "cannot compare a number with a string",
            ),
            ("pump1.current && pump2.fault", "pump1.current"),
            ("!pump1.current", "Function not found"),
            ("pump1.state - 1 > 0", "Function not found"),
            // Only reached when `pump1.running` is true: the second dummy pass.
            ("pump1.running && pump1.state > 2", "cannot compare"),
        ] {
            let err = check(expr, known).unwrap_err();
            assert!(err.contains(needle), "{expr}: {err}");
            assert!(err.starts_with(&format!("expr \"{expr}\"")), "{err}");
        }
    }

    #[test]
    fn check_reports_syntax_and_refuses_statements() {
        for expr in [
            "pump1.current > ",
            "pump1.current > 1; pump1.running",
            "eval(\"pump1.running\")",
            "let x = 1",
            "loop { }",
            "print(pump1.current)",
        ] {
            assert!(check(expr, known).is_err(), "{expr}");
        }
    }

    #[test]
    fn a_mismatch_the_dummies_never_reach_is_false_at_run_time() {
        let e =
            "if pump1.current > 0.5 && pump1.current < 0.9 { pump1.running > 1 } else { false }";
        assert_eq!(check(e, known), Ok(()));
        assert_eq!(eval(e, &[Value::Float(0.7), Value::Bool(true)]), Ok(false));
    }

    #[test]
    fn data_dependent_arithmetic_is_not_a_check_error() {
        assert_eq!(
            check("pump1.current.to_int() / pump1.mode.to_int() > 1", known),
            Ok(())
        );
        // At run time the same failure is an evaluation error.
        let err = eval(
            "pump1.current.to_int() / pump1.mode.to_int() > 1",
            &[Value::Float(1.0), Value::Float(0.0)],
        );
        assert!(matches!(err, Err(ExprError::Eval { .. })), "{err:?}");
    }

    #[test]
    fn cost_is_bounded() {
        // Deep nesting is refused at compile time.
        let deep = format!(
            "{}pump1.current{} > 1",
            "(".repeat(MAX_DEPTH + 5),
            ")".repeat(MAX_DEPTH + 5)
        );
        assert!(check(&deep, known).is_err());
        // A long chain is too deep as well.
        let chain = vec!["pump1.current > 1"; 100].join(" || ");
        assert!(check(&chain, known).unwrap_err().contains("complexity"));
        // A balanced tree of 4,096 comparisons is shallow enough to compile,
        // and stops at the operation limit.
        let mut tree = "pump1.current > 1".to_owned();
        for _ in 0..12 {
            tree = format!("({tree}) || ({tree})");
        }
        let err = eval(&tree, &[Value::Float(0.0)]).unwrap_err().to_string();
        assert!(
            err.contains("Too many operations"),
            "{}",
            &err[err.len() - 80..]
        );
    }
}
