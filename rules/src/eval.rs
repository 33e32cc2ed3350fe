//! The compiled form of a condition, and its evaluation.
//!
//! Every name was resolved when the rule was compiled: features are slots in
//! the feature vector, event fields are enum tags, lists are indices. Nothing
//! here looks a name up (except free-form `attrs`, which are per event by
//! nature) and nothing allocates.

use std::collections::HashSet;
use std::io::Write;
use std::net::IpAddr;

use haechi_features::{AttrValue, Event};
use ipnet::IpNet;
use regex::Regex;

/// A string-valued event field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StrField {
    EventId,
    Step,
    Result,
    FailureReason,
    SessionId,
    CustomerId,
    IdDocHash,
    Ip,
    DeviceId,
    UserAgent,
    Channel,
    Region,
    AccountHash,
    StaffId,
}

impl StrField {
    pub(crate) fn by_name(name: &str) -> Option<StrField> {
        Some(match name {
            "event_id" => StrField::EventId,
            "step" => StrField::Step,
            "result" => StrField::Result,
            "failure_reason" => StrField::FailureReason,
            "session_id" => StrField::SessionId,
            "customer_id" => StrField::CustomerId,
            "id_doc_hash" => StrField::IdDocHash,
            "ip" => StrField::Ip,
            "device_id" => StrField::DeviceId,
            "user_agent" => StrField::UserAgent,
            "channel" => StrField::Channel,
            "region" => StrField::Region,
            "account_hash" => StrField::AccountHash,
            "staff_id" => StrField::StaffId,
            _ => return None,
        })
    }

    fn present(self, e: &Event) -> bool {
        match self {
            StrField::EventId | StrField::Step | StrField::Result => true,
            StrField::FailureReason => e.failure_reason.is_some(),
            StrField::SessionId => e.session_id.is_some(),
            StrField::CustomerId => e.customer_id.is_some(),
            StrField::IdDocHash => e.id_doc_hash.is_some(),
            StrField::Ip => e.ip.is_some(),
            StrField::DeviceId => e.device_id.is_some(),
            StrField::UserAgent => e.user_agent.is_some(),
            StrField::Channel => e.channel.is_some(),
            StrField::Region => e.region.is_some(),
            StrField::AccountHash => e.account_hash.is_some(),
            StrField::StaffId => e.staff_id.is_some(),
        }
    }
}

/// A number-valued event field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NumField {
    DurationMs,
    Records,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ArithOp {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl CmpOp {
    fn num(self, a: f64, b: f64) -> bool {
        match self {
            CmpOp::Eq => a == b,
            CmpOp::Ne => a != b,
            CmpOp::Lt => a < b,
            CmpOp::Le => a <= b,
            CmpOp::Gt => a > b,
            CmpOp::Ge => a >= b,
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) enum Num {
    Const(f64),
    Feature(usize),
    Field(NumField),
    /// A numeric `attrs` entry; NaN when absent or not a number, so every comparison but `!=` is false.
    Attr(Box<str>),
    Neg(Box<Num>),
    Arith(ArithOp, Box<Num>, Box<Num>),
}

#[derive(Debug, Clone)]
pub(crate) enum Str {
    Const(Box<str>),
    Field(StrField),
    /// A string `attrs` entry; empty when absent or not a string.
    Attr(Box<str>),
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum StrTest {
    Contains,
    StartsWith,
    EndsWith,
}

/// A compiled condition.
#[derive(Debug, Clone)]
pub(crate) enum Cond {
    Const(bool),
    And(Box<[Cond]>),
    Or(Box<[Cond]>),
    Not(Box<Cond>),
    If(Box<Cond>, Box<Cond>, Box<Cond>),
    Num(CmpOp, Num, Num),
    /// A feature against a constant, the most common condition of all,
    /// without two recursive evaluations (see [`Cond::compare`]).
    FeatureCmp(CmpOp, usize, f64),
    /// String equality; `true` in the first field negates it.
    StrEq(bool, Str, Str),
    /// Membership in a literal list. Boxed: inline, the set would make
    /// every condition of the tree (most are `FeatureCmp`s) as large as itself.
    #[allow(clippy::box_collection)]
    StrInSet(Str, Box<HashSet<Box<str>>>),
    /// The event's step is one of a set (bit `1 << step`): `event.step ==`
    /// and `event.step in [...]` without a string comparison or a hash.
    StepIn(u16),
    /// Membership of a string field in a named list.
    StrInList(Str, usize),
    /// The event's address inside a named list's addresses or networks.
    IpInList(usize),
    Test(StrTest, Str, Str),
    Matches(Str, Box<Regex>),
    Has(StrField),
    HasNum(NumField),
    HasAttr(Box<str>),
    BoolAttr(Box<str>),
}

/// A named list: exact strings, and for addresses, networks.
#[derive(Debug, Clone, Default)]
pub struct NamedList {
    pub(crate) strings: HashSet<Box<str>>,
    pub(crate) nets: Vec<IpNet>,
}

impl NamedList {
    pub(crate) fn from_entries<'a>(entries: impl IntoIterator<Item = &'a str>) -> NamedList {
        let mut list = NamedList::default();
        for e in entries {
            let e = e.trim();
            if let Ok(net) = e.parse::<IpNet>() {
                list.nets.push(net);
            } else if let Ok(ip) = e.parse::<IpAddr>() {
                list.nets.push(IpNet::from(ip));
            }
            list.strings.insert(e.into());
        }
        list
    }

    fn contains_ip(&self, ip: IpAddr) -> bool {
        self.nets.iter().any(|n| n.contains(&ip))
    }

    /// Entries in the list.
    pub fn len(&self) -> usize {
        self.strings.len()
    }
}

/// Everything a condition may read.
pub(crate) struct Ctx<'a> {
    pub event: &'a Event,
    pub features: &'a [f32],
    pub lists: &'a [NamedList],
}

/// A string read from an event: borrowed, or an address formatted on the stack.
enum StrVal<'a> {
    Borrowed(&'a str),
    Ip([u8; 46], usize),
}

impl StrVal<'_> {
    fn as_str(&self) -> &str {
        match self {
            StrVal::Borrowed(s) => s,
            StrVal::Ip(buf, n) => std::str::from_utf8(&buf[..*n]).unwrap_or(""),
        }
    }
}

impl Str {
    fn get<'a>(&'a self, e: &'a Event) -> StrVal<'a> {
        let opt = |o: &'a Option<compact_str::CompactString>| StrVal::Borrowed(o.as_deref().unwrap_or(""));
        match self {
            Str::Const(s) => StrVal::Borrowed(s),
            Str::Attr(k) => StrVal::Borrowed(match e.attrs.get(&**k) {
                Some(AttrValue::Text(t)) => t,
                _ => "",
            }),
            Str::Field(f) => match f {
                StrField::EventId => StrVal::Borrowed(&e.event_id),
                StrField::Step => StrVal::Borrowed(e.step.as_str()),
                StrField::Result => StrVal::Borrowed(match e.result {
                    haechi_features::Outcome::Success => "success",
                    haechi_features::Outcome::Failure => "failure",
                }),
                StrField::FailureReason => opt(&e.failure_reason),
                StrField::SessionId => opt(&e.session_id),
                StrField::CustomerId => opt(&e.customer_id),
                StrField::IdDocHash => opt(&e.id_doc_hash),
                StrField::DeviceId => opt(&e.device_id),
                StrField::UserAgent => StrVal::Borrowed(e.user_agent.as_deref().unwrap_or("")),
                StrField::Channel => StrVal::Borrowed(match e.channel {
                    Some(haechi_features::Channel::App) => "app",
                    Some(haechi_features::Channel::Web) => "web",
                    None => "",
                }),
                StrField::Region => opt(&e.region),
                StrField::AccountHash => opt(&e.account_hash),
                StrField::StaffId => opt(&e.staff_id),
                StrField::Ip => match e.ip {
                    None => StrVal::Borrowed(""),
                    Some(ip) => {
                        let mut buf = [0u8; 46];
                        let mut cur = std::io::Cursor::new(&mut buf[..]);
                        let _ = write!(cur, "{ip}");
                        let n = cur.position() as usize;
                        StrVal::Ip(buf, n)
                    }
                },
            },
        }
    }
}

impl Num {
    fn eval(&self, c: &Ctx<'_>) -> f64 {
        match self {
            Num::Const(v) => *v,
            Num::Feature(slot) => f64::from(c.features[*slot]),
            Num::Field(NumField::DurationMs) => c.event.duration_ms.map_or(0.0, |d| d as f64),
            Num::Field(NumField::Records) => c.event.records.map_or(0.0, |r| r as f64),
            Num::Attr(k) => match c.event.attrs.get(&**k) {
                Some(AttrValue::Number(n)) => *n,
                _ => f64::NAN,
            },
            Num::Neg(a) => -a.eval(c),
            Num::Arith(op, a, b) => {
                let (a, b) = (a.eval(c), b.eval(c));
                match op {
                    ArithOp::Add => a + b,
                    ArithOp::Sub => a - b,
                    ArithOp::Mul => a * b,
                    // Division by zero gives inf or NaN, never a panic: a rule
                    // dividing by a count that is 0 simply does not fire.
                    ArithOp::Div => a / b,
                    ArithOp::Rem => a % b,
                }
            }
        }
    }
}

impl CmpOp {
    /// The comparison with its sides swapped: `a op b` ⟺ `b op.flipped() a`.
    pub(crate) fn flipped(self) -> CmpOp {
        match self {
            CmpOp::Lt => CmpOp::Gt,
            CmpOp::Le => CmpOp::Ge,
            CmpOp::Gt => CmpOp::Lt,
            CmpOp::Ge => CmpOp::Le,
            same => same,
        }
    }
}

impl Cond {
    /// `a op b`, a feature against a constant in its own, cheaper form.
    pub(crate) fn compare(op: CmpOp, a: Num, b: Num) -> Cond {
        match (a, b) {
            (Num::Feature(slot), Num::Const(v)) => Cond::FeatureCmp(op, slot, v),
            (Num::Const(v), Num::Feature(slot)) => Cond::FeatureCmp(op.flipped(), slot, v),
            (a, b) => Cond::Num(op, a, b),
        }
    }

    pub(crate) fn eval(&self, c: &Ctx<'_>) -> bool {
        match self {
            Cond::Const(b) => *b,
            Cond::And(all) => all.iter().all(|x| x.eval(c)),
            Cond::Or(any) => any.iter().any(|x| x.eval(c)),
            Cond::Not(x) => !x.eval(c),
            Cond::If(test, a, b) => {
                if test.eval(c) {
                    a.eval(c)
                } else {
                    b.eval(c)
                }
            }
            Cond::Num(op, a, b) => op.num(a.eval(c), b.eval(c)),
            Cond::FeatureCmp(op, slot, v) => op.num(f64::from(c.features[*slot]), *v),
            Cond::StrEq(neg, a, b) => (a.get(c.event).as_str() == b.get(c.event).as_str()) != *neg,
            Cond::StrInSet(s, set) => set.contains(s.get(c.event).as_str()),
            Cond::StepIn(mask) => mask & (1 << c.event.step as u16) != 0,
            Cond::StrInList(s, l) => c.lists[*l].strings.contains(s.get(c.event).as_str()),
            Cond::IpInList(l) => c.event.ip.is_some_and(|ip| c.lists[*l].contains_ip(ip)),
            Cond::Test(t, a, b) => {
                let (a, b) = (a.get(c.event), b.get(c.event));
                let (a, b) = (a.as_str(), b.as_str());
                match t {
                    StrTest::Contains => a.contains(b),
                    StrTest::StartsWith => a.starts_with(b),
                    StrTest::EndsWith => a.ends_with(b),
                }
            }
            Cond::Matches(s, re) => re.is_match(s.get(c.event).as_str()),
            Cond::Has(f) => f.present(c.event),
            Cond::HasNum(NumField::DurationMs) => c.event.duration_ms.is_some(),
            Cond::HasNum(NumField::Records) => c.event.records.is_some(),
            Cond::HasAttr(k) => c.event.attrs.contains_key(&**k),
            Cond::BoolAttr(k) => matches!(c.event.attrs.get(&**k), Some(AttrValue::Bool(true))),
        }
    }
}
