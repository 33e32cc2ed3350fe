//! From CEL text to a [`Cond`]: names resolved, types checked, once.

use std::collections::{BTreeMap, HashMap, HashSet};

use cel_parser::{ArithmeticOp, Atom, Expression, Member, RelationOp, UnaryOp};
use haechi_features::{FeatureCatalog, Step};
use regex::Regex;

use crate::eval::{ArithOp, CmpOp, Cond, Num, NumField, Str, StrField, StrTest};

/// A compile error, with the text to point at in the source when known.
#[derive(Debug, Clone)]
pub(crate) struct CompileError {
    pub message: String,
    /// Text of the offending part; the caller finds it in the expression to
    /// give a column. (cel-parser reports positions only for syntax errors.)
    pub needle: Option<String>,
    /// Byte offset in the expression, when the parser gave one.
    pub offset: Option<usize>,
}

fn err<T>(message: impl Into<String>, needle: impl Into<Option<String>>) -> Result<T, CompileError> {
    Err(CompileError { message: message.into(), needle: needle.into(), offset: None })
}

/// What names mean while compiling one rule set.
pub(crate) struct Scope<'a> {
    pub catalog: &'a FeatureCatalog,
    pub lists: &'a HashMap<String, usize>,
    pub macros: &'a BTreeMap<String, String>,
}

/// A typed intermediate value.
enum Typed {
    Num(Num),
    Str(Str),
    Bool(Cond),
    /// A literal list: strings or numbers.
    List(Vec<Atom>),
    /// A named list.
    Named(usize),
    /// An `attrs` entry whose type the context decides.
    Attr(Box<str>),
}

impl Typed {
    fn kind(&self) -> &'static str {
        match self {
            Typed::Num(_) => "number",
            Typed::Str(_) => "string",
            Typed::Bool(_) => "bool",
            Typed::List(_) => "list",
            Typed::Named(..) => "named list",
            Typed::Attr(_) => "attribute",
        }
    }
}

/// Compile one expression to a condition; the feature slots it reads are added to `reads`.
pub(crate) fn compile(source: &str, scope: &Scope<'_>, reads: &mut Vec<usize>) -> Result<Cond, CompileError> {
    let mut c = Compiler { scope, reads, expanding: Vec::new() };
    let ast = parse(source)?;
    c.bool(&ast)
}

fn parse(source: &str) -> Result<Expression, CompileError> {
    cel_parser::parse(source).map_err(|e| {
        // The grammar's own token names are regexes; only plain ones help a reader.
        let plain: Vec<&str> = e.expected.iter().map(String::as_str).filter(|t| t.starts_with('"') && t.len() <= 6).collect();
        let hint = if !plain.is_empty() && plain.len() <= 4 { format!(" (expected {})", plain.join(" or ")) } else { String::new() };
        CompileError {
            message: format!("syntax error: {}{hint}", e.msg),
            needle: None,
            offset: Some(e.span.start.map_or(0, |l| l.absolute).min(source.len())),
        }
    })
}

struct Compiler<'s, 'r> {
    scope: &'s Scope<'s>,
    reads: &'r mut Vec<usize>,
    /// Macros being expanded, to refuse a macro that uses itself.
    expanding: Vec<String>,
}

/// Dotted path of a member chain (`features.ip.events_10m`), if it is one.
fn path(e: &Expression) -> Option<String> {
    match e {
        Expression::Ident(name) => Some(name.to_string()),
        Expression::Member(base, m) => match &**m {
            Member::Attribute(f) => path(base).map(|p| format!("{p}.{f}")),
            _ => None,
        },
        _ => None,
    }
}

fn show(e: &Expression) -> Option<String> {
    path(e).or(match e {
        Expression::Atom(Atom::String(s)) => Some(format!("\"{s}\"")),
        Expression::Atom(Atom::Int(i)) => Some(i.to_string()),
        _ => None,
    })
}

/// `a && b && c` arrives as nested pairs; flatten it to one n-ary node.
fn flatten<'e>(e: &'e Expression, and: bool, out: &mut Vec<&'e Expression>) {
    match (e, and) {
        (Expression::And(a, b), true) | (Expression::Or(a, b), false) => {
            flatten(a, and, out);
            flatten(b, and, out);
        }
        _ => out.push(e),
    }
}

impl Compiler<'_, '_> {
    fn bool(&mut self, e: &Expression) -> Result<Cond, CompileError> {
        match self.typed(e)? {
            Typed::Bool(c) => Ok(c),
            Typed::Attr(k) => Ok(Cond::BoolAttr(k)),
            other => err(format!("expected a condition, found a {}", other.kind()), show(e)),
        }
    }

    fn num(&mut self, e: &Expression) -> Result<Num, CompileError> {
        match self.typed(e)? {
            Typed::Num(n) => Ok(n),
            Typed::Attr(k) => Ok(Num::Attr(k)),
            other => err(format!("expected a number, found a {}", other.kind()), show(e)),
        }
    }

    fn string(&mut self, e: &Expression) -> Result<Str, CompileError> {
        match self.typed(e)? {
            Typed::Str(s) => Ok(s),
            Typed::Attr(k) => Ok(Str::Attr(k)),
            other => err(format!("expected a string, found a {}", other.kind()), show(e)),
        }
    }

    fn typed(&mut self, e: &Expression) -> Result<Typed, CompileError> {
        match e {
            Expression::Atom(a) => match a {
                Atom::Bool(b) => Ok(Typed::Bool(Cond::Const(*b))),
                Atom::Int(i) => Ok(Typed::Num(Num::Const(*i as f64))),
                Atom::UInt(u) => Ok(Typed::Num(Num::Const(*u as f64))),
                Atom::Float(d) => Ok(Typed::Num(Num::Const(*d))),
                Atom::String(s) => Ok(Typed::Str(Str::Const(s.as_str().into()))),
                Atom::Bytes(_) | Atom::Null => err("bytes and null are not supported here", None),
            },
            Expression::List(items) => {
                let mut out = Vec::with_capacity(items.len());
                for el in items {
                    match el {
                        Expression::Atom(a @ (Atom::String(_) | Atom::Int(_) | Atom::UInt(_) | Atom::Float(_))) => out.push(a.clone()),
                        _ => return err("list elements must be string or number literals", show(el)),
                    }
                }
                Ok(Typed::List(out))
            }
            Expression::Ident(name) => self.ident(name),
            Expression::Member(base, m) => match &**m {
                Member::Attribute(_) => {
                    let p = path(e).ok_or_else(|| CompileError { message: "unsupported field access".into(), needle: None, offset: None })?;
                    self.select(&p)
                }
                Member::Index(k) => match (path(base).as_deref(), &**k) {
                    (Some("event.attrs"), Expression::Atom(Atom::String(key))) => Ok(Typed::Attr(key.as_str().into())),
                    _ => err("indexing is only supported as event.attrs[\"key\"]", show(base)),
                },
                Member::Fields(_) => err("struct literals are not supported in rules", show(base)),
            },
            Expression::And(..) | Expression::Or(..) => {
                let and = matches!(e, Expression::And(..));
                let mut terms = Vec::new();
                flatten(e, and, &mut terms);
                let mut parts = Vec::with_capacity(terms.len());
                for t in terms {
                    parts.push(self.bool(t)?);
                }
                Ok(Typed::Bool(if and { Cond::And(parts.into()) } else { Cond::Or(parts.into()) }))
            }
            Expression::Unary(op, a) => match op {
                UnaryOp::Not => Ok(Typed::Bool(Cond::Not(Box::new(self.bool(a)?)))),
                UnaryOp::DoubleNot => Ok(Typed::Bool(self.bool(a)?)),
                UnaryOp::Minus => Ok(Typed::Num(Num::Neg(Box::new(self.num(a)?)))),
                UnaryOp::DoubleMinus => Ok(Typed::Num(self.num(a)?)),
            },
            Expression::Ternary(t, a, b) => Ok(Typed::Bool(Cond::If(Box::new(self.bool(t)?), Box::new(self.bool(a)?), Box::new(self.bool(b)?)))),
            Expression::Arithmetic(a, op, b) => {
                let o = match op {
                    ArithmeticOp::Add => ArithOp::Add,
                    ArithmeticOp::Subtract => ArithOp::Sub,
                    ArithmeticOp::Multiply => ArithOp::Mul,
                    ArithmeticOp::Divide => ArithOp::Div,
                    ArithmeticOp::Modulus => ArithOp::Rem,
                };
                Ok(Typed::Num(Num::Arith(o, Box::new(self.num(a)?), Box::new(self.num(b)?))))
            }
            Expression::Relation(a, op, b) => match op {
                RelationOp::Equals => self.equality(false, a, b),
                RelationOp::NotEquals => self.equality(true, a, b),
                RelationOp::In => self.membership(a, b),
                RelationOp::LessThan | RelationOp::LessThanEq | RelationOp::GreaterThan | RelationOp::GreaterThanEq => {
                    let o = match op {
                        RelationOp::LessThan => CmpOp::Lt,
                        RelationOp::LessThanEq => CmpOp::Le,
                        RelationOp::GreaterThan => CmpOp::Gt,
                        _ => CmpOp::Ge,
                    };
                    Ok(Typed::Bool(Cond::compare(o, self.num(a)?, self.num(b)?)))
                }
            },
            Expression::FunctionCall(f, target, args) => {
                let Expression::Ident(name) = &**f else { return err("unsupported call", None) };
                self.call(name, target.as_deref(), args)
            }
            Expression::Map(_) => err("maps are not supported in rules", None),
        }
    }

    fn ident(&mut self, name: &str) -> Result<Typed, CompileError> {
        let Some(body) = self.scope.macros.get(name) else {
            return err(
                format!("unknown name `{name}`: use event.<field>, features.<kind>.<feature>, lists.<name> or a macro"),
                Some(name.to_owned()),
            );
        };
        if self.expanding.iter().any(|m| m == name) {
            return err(format!("macro `{name}` uses itself"), Some(name.to_owned()));
        }
        let wrap = |e: CompileError| CompileError { message: format!("in macro `{name}`: {}", e.message), needle: Some(name.to_owned()), offset: None };
        let ast = parse(body).map_err(wrap)?;
        self.expanding.push(name.to_owned());
        let out = self.typed(&ast).map_err(wrap);
        self.expanding.pop();
        out
    }

    fn select(&mut self, p: &str) -> Result<Typed, CompileError> {
        if let Some(rest) = p.strip_prefix("features.") {
            let slot = self.scope.catalog.slot(rest).ok_or_else(|| {
                let near = self.scope.catalog.suggest(rest);
                let hint = if near.is_empty() { String::new() } else { format!("; did you mean {}?", near.iter().map(|n| format!("features.{n}")).collect::<Vec<_>>().join(", ")) };
                CompileError { message: format!("unknown feature `{p}`{hint}"), needle: Some(p.to_owned()), offset: None }
            })?;
            if !self.reads.contains(&slot) {
                self.reads.push(slot);
            }
            return Ok(Typed::Num(Num::Feature(slot)));
        }
        if let Some(key) = p.strip_prefix("event.attrs.") {
            return Ok(Typed::Attr(key.into()));
        }
        if let Some(field) = p.strip_prefix("event.") {
            if let Some(f) = StrField::by_name(field) {
                return Ok(Typed::Str(Str::Field(f)));
            }
            if let Some(n) = num_field(field) {
                return Ok(Typed::Num(Num::Field(n)));
            }
            if field == "ts" {
                return err("event.ts is not readable in rules; use features.event.hour or a window feature", Some(p.to_owned()));
            }
            return err(format!("unknown event field `{p}`"), Some(p.to_owned()));
        }
        if let Some(name) = p.strip_prefix("lists.") {
            let idx = *self.scope.lists.get(name).ok_or_else(|| CompileError {
                message: format!("unknown list `{name}`"),
                needle: Some(p.to_owned()),
                offset: None,
            })?;
            return Ok(Typed::Named(idx));
        }
        err(format!("unknown name `{p}`"), Some(p.to_owned()))
    }

    fn call(&mut self, f: &str, target: Option<&Expression>, args: &[Expression]) -> Result<Typed, CompileError> {
        match (f, target, args) {
            ("has", None, [a]) => {
                let p = path(a).unwrap_or_default();
                if let Some(key) = p.strip_prefix("event.attrs.") {
                    return Ok(Typed::Bool(Cond::HasAttr(key.into())));
                }
                match p.strip_prefix("event.").map(|f| (StrField::by_name(f), num_field(f))) {
                    Some((Some(f), _)) => Ok(Typed::Bool(Cond::Has(f))),
                    Some((None, Some(n))) => Ok(Typed::Bool(Cond::HasNum(n))),
                    _ => err(format!("has() takes an event field, not `{p}`"), Some(p)),
                }
            }
            ("contains" | "startsWith" | "endsWith", Some(t), [a]) => {
                let test = match f {
                    "contains" => StrTest::Contains,
                    "startsWith" => StrTest::StartsWith,
                    _ => StrTest::EndsWith,
                };
                Ok(Typed::Bool(Cond::Test(test, self.string(t)?, self.string(a)?)))
            }
            ("matches", Some(t), [a]) => {
                let Expression::Atom(Atom::String(pattern)) = a else {
                    return err("matches() takes a string literal, compiled once at load", Some("matches".to_owned()));
                };
                let re = Regex::new(pattern).map_err(|e| CompileError { message: format!("bad regular expression: {e}"), needle: Some(pattern.to_string()), offset: None })?;
                Ok(Typed::Bool(Cond::Matches(self.string(t)?, Box::new(re))))
            }
            ("double" | "int", None, [a]) => Ok(Typed::Num(self.num(a)?)),
            _ => err(format!("unsupported function `{f}` with these arguments"), Some(f.to_owned())),
        }
    }

    fn equality(&mut self, negate: bool, a: &Expression, b: &Expression) -> Result<Typed, CompileError> {
        let (ta, tb) = (self.typed(a)?, self.typed(b)?);
        let cmp = if negate { CmpOp::Ne } else { CmpOp::Eq };
        let same = |x: Cond, y: Cond| {
            let eq = Cond::Or(Box::new([Cond::And(Box::new([x.clone(), y.clone()])), Cond::And(Box::new([Cond::Not(Box::new(x)), Cond::Not(Box::new(y))]))]));
            if negate {
                Cond::Not(Box::new(eq))
            } else {
                eq
            }
        };
        Ok(Typed::Bool(match (ta, tb) {
            (Typed::Num(x), Typed::Num(y)) => Cond::compare(cmp, x, y),
            (Typed::Num(x), Typed::Attr(k)) | (Typed::Attr(k), Typed::Num(x)) => Cond::Num(cmp, x, Num::Attr(k)),
            (Typed::Str(x), Typed::Str(y)) => {
                check_enum_literal(&x, &y)?;
                check_enum_literal(&y, &x)?;
                fn literal(s: &Str) -> Option<&str> {
                    match s {
                        Str::Const(v) => Some(v),
                        _ => None,
                    }
                }
                let mask = literal(&y).and_then(|v| step_mask(&x, [v])).or_else(|| literal(&x).and_then(|v| step_mask(&y, [v])));
                match mask {
                    Some(mask) if negate => Cond::Not(Box::new(Cond::StepIn(mask))),
                    Some(mask) => Cond::StepIn(mask),
                    None => Cond::StrEq(negate, x, y),
                }
            }
            (Typed::Str(x), Typed::Attr(k)) | (Typed::Attr(k), Typed::Str(x)) => Cond::StrEq(negate, x, Str::Attr(k)),
            (Typed::Bool(x), Typed::Bool(y)) => same(x, y),
            (Typed::Bool(x), Typed::Attr(k)) | (Typed::Attr(k), Typed::Bool(x)) => same(x, Cond::BoolAttr(k)),
            (x, y) => return err(format!("cannot compare a {} with a {}", x.kind(), y.kind()), show(a)),
        }))
    }

    fn membership(&mut self, a: &Expression, b: &Expression) -> Result<Typed, CompileError> {
        match self.typed(b)? {
            Typed::List(items) => {
                let left = self.typed(a)?;
                if let Typed::Num(n) = left {
                    let mut any = Vec::with_capacity(items.len());
                    for v in items {
                        let x = match v {
                            Atom::Int(i) => i as f64,
                            Atom::UInt(u) => u as f64,
                            Atom::Float(d) => d,
                            _ => return err("a number cannot be in a list of strings", show(a)),
                        };
                        any.push(Cond::Num(CmpOp::Eq, n.clone(), Num::Const(x)));
                    }
                    return Ok(Typed::Bool(Cond::Or(any.into())));
                }
                let s = match left {
                    Typed::Str(s) => s,
                    Typed::Attr(k) => Str::Attr(k),
                    other => return err(format!("a {} cannot be in a list", other.kind()), show(a)),
                };
                let mut set: HashSet<Box<str>> = HashSet::new();
                for v in items {
                    let Atom::String(text) = v else { return err("a string cannot be in a list of numbers", show(a)) };
                    check_enum_literal(&s, &Str::Const(text.as_str().into()))?;
                    set.insert(text.as_str().into());
                }
                if let Some(mask) = step_mask(&s, set.iter().map(|t| &**t)) {
                    return Ok(Typed::Bool(Cond::StepIn(mask)));
                }
                Ok(Typed::Bool(Cond::StrInSet(s, Box::new(set))))
            }
            Typed::Named(idx) => {
                if path(a).as_deref() == Some("event.ip") {
                    return Ok(Typed::Bool(Cond::IpInList(idx)));
                }
                Ok(Typed::Bool(Cond::StrInList(self.string(a)?, idx)))
            }
            other => err(format!("`in` needs a list on its right, found a {}", other.kind()), show(b)),
        }
    }
}

fn num_field(name: &str) -> Option<NumField> {
    match name {
        "duration_ms" => Some(NumField::DurationMs),
        "records" => Some(NumField::Records),
        _ => None,
    }
}

/// `event.step` against string literals, as a bit set of steps: every rule
/// asks which step an event is, and a bit test costs less than hashing the
/// step's name. `None` when `field` is not the step.
fn step_mask<'a>(field: &Str, literals: impl IntoIterator<Item = &'a str>) -> Option<u16> {
    if !matches!(field, Str::Field(StrField::Step)) {
        return None;
    }
    let mut mask = 0u16;
    for value in literals {
        // Unknown names were refused by `check_enum_literal`; one that got
        // here anyway matches no event, as the string comparison would.
        if let Some(step) = Step::ALL.iter().find(|s| s.as_str() == value) {
            mask |= 1 << *step as u16;
        }
    }
    Some(mask)
}

/// `event.step == "acount_open"` can never be true: say so at load time.
fn check_enum_literal(field: &Str, literal: &Str) -> Result<(), CompileError> {
    let (Str::Field(f), Str::Const(value)) = (field, literal) else { return Ok(()) };
    let known: Vec<&str> = match f {
        StrField::Step => Step::ALL.iter().map(|s| s.as_str()).collect(),
        StrField::Result => vec!["success", "failure"],
        StrField::Channel => vec!["app", "web"],
        _ => return Ok(()),
    };
    if known.contains(&&**value) {
        Ok(())
    } else {
        err(format!("`{value}` is not a known value here; known: {}", known.join(", ")), Some(format!("\"{value}\"")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use haechi_features::FeatureConfig;

    fn scope_parts() -> (FeatureCatalog, HashMap<String, usize>, BTreeMap<String, String>) {
        let catalog = FeatureCatalog::new(&FeatureConfig::default().validate().unwrap());
        let lists = HashMap::from([("bank_nat".to_owned(), 0)]);
        let macros = BTreeMap::from([
            ("onboarding".to_owned(), r#"event.step in ["id_ocr", "account_open"]"#.to_owned()),
            ("loop_a".to_owned(), "loop_b".to_owned()),
            ("loop_b".to_owned(), "loop_a".to_owned()),
        ]);
        (catalog, lists, macros)
    }

    fn compile_str(src: &str) -> Result<(Cond, Vec<usize>), CompileError> {
        let (catalog, lists, macros) = scope_parts();
        let scope = Scope { catalog: &catalog, lists: &lists, macros: &macros };
        let mut reads = Vec::new();
        compile(src, &scope, &mut reads).map(|c| (c, reads))
    }

    #[test]
    fn a_step_test_is_a_bit_test_that_answers_as_the_string_comparison_would() {
        type Case = (&'static str, fn(&str) -> bool);
        let cases: [Case; 6] = [
            (r#"event.step == "otp""#, |s| s == "otp"),
            (r#""liveness" == event.step"#, |s| s == "liveness"),
            (r#"event.step != "login""#, |s| s != "login"),
            (r#"event.step in ["record_view", "record_export"]"#, |s| s.starts_with("record_")),
            (r#"!(event.step in ["id_ocr", "face_match", "account_open"])"#, |s| !["id_ocr", "face_match", "account_open"].contains(&s)),
            ("onboarding", |s| s == "id_ocr" || s == "account_open"),
        ];
        for (src, expected) in cases {
            let (cond, _) = compile_str(src).unwrap();
            let mut bit_tests = 0;
            count_step_tests(&cond, &mut bit_tests);
            assert_eq!(bit_tests, 1, "{src} compiles to a bit test: {cond:?}");
            for step in Step::ALL {
                let line = format!(r#"{{"event_id":"e","ts":"2026-11-02T10:00:00+09:00","step":"{}","result":"success","customer_id":"c","staff_id":"st-1"}}"#, step.as_str());
                let event = haechi_features::Event::parse(line.as_bytes(), 4096).unwrap();
                let ctx = crate::eval::Ctx { event: &event, features: &[], lists: &[] };
                assert_eq!(cond.eval(&ctx), expected(step.as_str()), "{src} on {}", step.as_str());
            }
        }
        // Other string fields keep the string comparison.
        let (cond, _) = compile_str(r#"event.result == "failure""#).unwrap();
        assert!(matches!(cond, Cond::StrEq(..)), "{cond:?}");
    }

    #[test]
    fn a_feature_against_a_constant_answers_as_the_general_comparison_on_either_side() {
        let (catalog, ..) = scope_parts();
        let ops = ["<", "<=", ">", ">=", "==", "!="];
        let line = r#"{"event_id":"e","ts":"2026-11-02T10:00:00+09:00","step":"otp","result":"success"}"#;
        let event = haechi_features::Event::parse(line.as_bytes(), 4096).unwrap();
        for op in ops {
            for src in [format!("features.ip.distinct_new_identities_1h {op} 2.0"), format!("2.0 {op} features.ip.distinct_new_identities_1h")] {
                let (cond, reads) = compile_str(&src).unwrap();
                let Cond::FeatureCmp(_, slot, _) = cond else { panic!("{src}: {cond:?}") };
                assert_eq!(reads, [slot]);
                // The general form the peephole replaced, built from the source's own operator.
                let written = match op {
                    "<" => CmpOp::Lt,
                    "<=" => CmpOp::Le,
                    ">" => CmpOp::Gt,
                    ">=" => CmpOp::Ge,
                    "==" => CmpOp::Eq,
                    _ => CmpOp::Ne,
                };
                let general = if src.starts_with('2') { Cond::Num(written, Num::Const(2.0), Num::Feature(slot)) } else { Cond::Num(written, Num::Feature(slot), Num::Const(2.0)) };
                for x in [1.0f32, 2.0, 3.0, f32::NAN] {
                    let mut features = vec![0.0f32; catalog.len()];
                    features[slot] = x;
                    let ctx = crate::eval::Ctx { event: &event, features: &features, lists: &[] };
                    let expected = match (op, src.starts_with('2')) {
                        ("<", false) | (">", true) => x < 2.0,
                        ("<=", false) | (">=", true) => x <= 2.0,
                        (">", false) | ("<", true) => x > 2.0,
                        (">=", false) | ("<=", true) => x >= 2.0,
                        ("==", _) => x == 2.0,
                        _ => x != 2.0,
                    };
                    assert_eq!(cond.eval(&ctx), expected, "{src} at {x}");
                    assert_eq!(general.eval(&ctx), expected, "{src} at {x}, general form");
                }
            }
        }
    }

    fn count_step_tests(c: &Cond, n: &mut usize) {
        match c {
            Cond::StepIn(_) => *n += 1,
            Cond::Not(x) => count_step_tests(x, n),
            Cond::And(xs) | Cond::Or(xs) => xs.iter().for_each(|x| count_step_tests(x, n)),
            _ => {}
        }
    }

    #[test]
    fn compiles_features_fields_lists_and_macros() {
        let (_, reads) = compile_str(
            r#"onboarding && features.id_doc.distinct_customers_24h >= 3 && !(event.ip in lists.bank_nat) && event.user_agent.contains("Headless") && event.attrs.rooted == true"#,
        )
        .unwrap();
        assert_eq!(reads.len(), 1);
    }

    #[test]
    fn unknown_names_and_type_errors_are_load_errors() {
        let e = compile_str("features.ip.distinct_customer_24h > 3").unwrap_err();
        assert!(e.message.contains("unknown feature") && e.message.contains("features.ip.distinct_customers_24h"), "{}", e.message);
        assert_eq!(e.needle.as_deref(), Some("features.ip.distinct_customer_24h"));
        assert!(compile_str(r#"event.step > 3"#).unwrap_err().message.contains("expected a number"));
        assert!(compile_str(r#"event.step == "acount_open""#).unwrap_err().message.contains("not a known value"));
        assert!(compile_str("features.ip.events_10m").unwrap_err().message.contains("expected a condition"));
        assert!(compile_str("lists.nope == 1").unwrap_err().message.contains("unknown list"));
        assert!(compile_str("loop_a").unwrap_err().message.contains("uses itself"));
        assert!(compile_str("event.colour == 'x'").unwrap_err().message.contains("unknown event field"));
        assert!(compile_str(r#"event.user_agent.matches("(")"#).unwrap_err().message.contains("regular expression"));
        let syntax = compile_str("features.ip.events_10m >= ").unwrap_err();
        assert!(syntax.message.contains("syntax error") && syntax.offset.is_some());
    }
}
