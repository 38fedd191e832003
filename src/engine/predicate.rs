//! The subset of Teleport's predicate language that Access Monitoring Rule
//! `condition` strings use, parsed once and evaluated against access requests.
//!
//! Teleport evaluates these conditions with its typed predicate parser over a
//! fixed set of variables and functions. This module accepts the part of that
//! language that is meaningful for routing notifications:
//!
//! | form | type |
//! | --- | --- |
//! | `"text"`, `` `raw` `` (Go string literals, with Go escapes) | string |
//! | `true`, `false` | boolean |
//! | `access_request.spec.user`, `access_request.spec.request_reason`, `plugin.spec.name` | string |
//! | `access_request.spec.roles`, `access_request.spec.suggested_reviewers` | set |
//! | `access_request.spec.system_annotations["key"]` or `...system_annotations.key` | set |
//! | `user.traits["key"]` or `user.traits.key` (the requester's traits) | set |
//! | `access_request.spec.resource_labels_union["key"]` (or `.key`): every value of the label on some requested resource | set |
//! | `access_request.spec.resource_labels_intersection["key"]` (or `.key`): the value every requested resource has | set |
//! | `access_request.spec.creation_time`, `access_request.spec.expiry` | time |
//! | `day(time)`, `time.day()`: the weekday in UTC, as Go names it ("Monday") | string |
//! | `clock_between(time, "HH:MM", "HH:MM")`, `time.clock_between(...)` (UTC, both ends excluded) | boolean |
//! | `set("a", "b", ...)` | set |
//! | `contains(set, string)`, `set.contains(string)` | boolean |
//! | `contains_any(set, set)`, `set.contains_any(set)` | boolean |
//! | `contains_all(set, set)`, `set.contains_all(set)` (false when the second set is empty) | boolean |
//! | `is_empty(set)`, `set.isempty()` | boolean |
//! | `string == string`, `string != string` | boolean |
//! | `!b`, `a && b`, `a \|\| b`, `( ... )` | boolean |
//!
//! Precedence follows Go, whose expression syntax the upstream parser uses:
//! `!` binds tightest, then `==`/`!=`, then `&&`, then `||`.
//!
//! Two deliberate supersets of upstream: the function form `contains(set, s)`
//! (Teleport only defines the method), and line breaks anywhere (Go's
//! semicolon insertion makes Teleport reject a line that starts with `&&`).
//!
//! Everything is type-checked while parsing, so [`Condition::matches`] cannot
//! fail: the `HH:MM` arguments of `clock_between` must be literals, checked
//! then (upstream fails the evaluation on a bad one, which skips the rule).
//! An unset time reads as Go's zero time (0001-01-01T00:00:00Z, a Monday), as
//! upstream. Anything outside the subset (other functions, numbers, `<`,
//! ...) is rejected by [`Condition::parse`]
//! with the position and a list of what is supported: a rule is never
//! evaluated with a meaning different from Teleport's.
//!
//! Input length and nesting depth are bounded, so hostile input can neither
//! exhaust the stack (while parsing or evaluating) nor make parsing slower
//! than linear.

use std::collections::BTreeMap;
use std::fmt;
use std::time::SystemTime;

use lexer::{Tok, Token, lex};

pub mod labels;
mod lexer;

/// Longest condition accepted, in bytes. Real conditions are a few hundred.
pub const MAX_CONDITION_LEN: usize = 16 * 1024;

/// Deepest nesting accepted: each `(`, `!`, argument list and `[...]` index
/// counts one level. Bounds recursion in the parser and the evaluator.
pub const MAX_DEPTH: usize = 64;

const FUNCTIONS: &[&str] = &[
    "clock_between",
    "contains",
    "contains_all",
    "contains_any",
    "day",
    "is_empty",
    "set",
];
const METHODS: &[&str] = &[
    "clock_between",
    "contains",
    "contains_all",
    "contains_any",
    "day",
    "isempty",
];
const VAR_USER: &str = "access_request.spec.user";
const VAR_REASON: &str = "access_request.spec.request_reason";
const VAR_PLUGIN: &str = "plugin.spec.name";
const VAR_ROLES: &str = "access_request.spec.roles";
const VAR_REVIEWERS: &str = "access_request.spec.suggested_reviewers";
const VAR_ANNOTATIONS: &str = "access_request.spec.system_annotations";
pub(crate) const VAR_TRAITS: &str = "user.traits";
const VAR_LABELS_UNION: &str = "access_request.spec.resource_labels_union";
const VAR_LABELS_INTERSECTION: &str = "access_request.spec.resource_labels_intersection";
const VAR_CREATED: &str = "access_request.spec.creation_time";
const VAR_EXPIRY: &str = "access_request.spec.expiry";
const VARIABLES: &[&str] = &[
    VAR_ROLES,
    VAR_REVIEWERS,
    VAR_USER,
    VAR_REASON,
    VAR_ANNOTATIONS,
    VAR_TRAITS,
    VAR_LABELS_UNION,
    VAR_LABELS_INTERSECTION,
    VAR_CREATED,
    VAR_EXPIRY,
    VAR_PLUGIN,
];
/// The map-valued variables, indexed by `["key"]` or `.key`.
const MAPS: &[MapKind] = &[
    MapKind::Annotations,
    MapKind::Traits,
    MapKind::LabelsUnion,
    MapKind::LabelsIntersection,
];
/// First path segments that name variables rather than function namespaces.
const VARIABLE_ROOTS: &[&str] = &["access_request", "plugin", "user"];

/// What a condition is evaluated against: the fields of one access request,
/// plus the name of the plugin doing the evaluation.
#[derive(Debug, Clone, Copy)]
pub struct RequestFacts<'a> {
    /// `access_request.spec.user`
    pub user: &'a str,
    /// `access_request.spec.roles`
    pub roles: &'a [String],
    /// `access_request.spec.suggested_reviewers`
    pub suggested_reviewers: &'a [String],
    /// `access_request.spec.request_reason`
    pub request_reason: &'a str,
    /// `access_request.spec.system_annotations`; a missing key is an empty set.
    pub system_annotations: &'a BTreeMap<String, Vec<String>>,
    /// `plugin.spec.name`
    pub plugin_name: &'a str,
    /// `user.traits`; empty when the requester's traits could not be read.
    pub user_traits: &'a BTreeMap<String, Vec<String>>,
    /// `access_request.spec.resource_labels_union` ([`labels::union`] of the
    /// requested resources found).
    pub resource_labels_union: &'a BTreeMap<String, Vec<String>>,
    /// `access_request.spec.resource_labels_intersection`
    /// ([`labels::intersection`]).
    pub resource_labels_intersection: &'a BTreeMap<String, Vec<String>>,
    /// `access_request.spec.creation_time`
    pub creation_time: Option<SystemTime>,
    /// `access_request.spec.expiry`
    pub expiry: Option<SystemTime>,
}

/// A parsed, type-checked Access Monitoring Rule condition.
///
/// `Display` prints a canonical form; for a condition returned by
/// [`Condition::parse`] that form parses back to an equal condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    root: BoolExpr,
}

impl Condition {
    /// Parses and type-checks `expr`. Fails on syntax errors, type errors and
    /// anything outside the supported subset; see the module documentation.
    pub fn parse(expr: &str) -> Result<Condition, PredicateError> {
        if expr.len() > MAX_CONDITION_LEN {
            return Err(PredicateError::at(
                expr,
                0,
                format!(
                    "condition is {} bytes long; the limit is {MAX_CONDITION_LEN}",
                    expr.len()
                ),
            ));
        }
        let toks = lex(expr)?;
        let mut p = Parser {
            src: expr,
            toks,
            i: 0,
            depth: 0,
        };
        if *p.peek() == Tok::Eof {
            return Err(p.err(p.pos(), "empty condition"));
        }
        let top = p.parse_or()?;
        if *p.peek() != Tok::Eof {
            return Err(p.err(
                p.pos(),
                format!(
                    "unexpected {}; expected an operator (&&, ||, ==, !=) or the end of the condition",
                    p.peek().describe()
                ),
            ));
        }
        let root = p.want_bool(top, "the condition")?;
        Ok(Condition { root })
    }

    /// Whether the access request described by `facts` satisfies the condition.
    pub fn matches(&self, facts: &RequestFacts<'_>) -> bool {
        self.root.eval(facts)
    }

    /// Whether the condition reads `user.traits`.
    pub fn uses_user_traits(&self) -> bool {
        self.root.reads_map(&|m| m == MapKind::Traits)
    }

    /// Whether the condition reads the labels of the requested resources.
    pub fn uses_resource_labels(&self) -> bool {
        self.root.reads_map(&|m| matches!(m, MapKind::LabelsUnion | MapKind::LabelsIntersection))
    }

    /// The condition `plugin.spec.name == "<plugin_name>" && (<self>)`.
    ///
    /// Teleport turns the deprecated `notification.name` field of a rule into
    /// this guard, so that a rule only applies to the plugin it names.
    pub fn restricted_to_plugin(self, plugin_name: &str) -> Condition {
        let mut parts = vec![BoolExpr::StrEq(
            StrExpr::PluginName,
            StrExpr::Lit(plugin_name.to_owned()),
        )];
        push_flat(&mut parts, self.root, true);
        Condition {
            root: BoolExpr::And(parts),
        }
    }
}

impl std::str::FromStr for Condition {
    type Err = PredicateError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Condition::parse(s)
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.root.write(f, 0)
    }
}

/// Why a condition was rejected, and where (1-based line and column, counted
/// in characters).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PredicateError {
    line: usize,
    column: usize,
    multiline: bool,
    reason: String,
    hint: Option<String>,
}

impl PredicateError {
    fn at(src: &str, pos: usize, reason: impl Into<String>) -> Self {
        let before = src.get(..pos).unwrap_or(src);
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
        PredicateError {
            line,
            column,
            multiline: src.contains('\n'),
            reason: reason.into(),
            hint: None,
        }
    }

    fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// 1-based line of the offending input.
    pub fn line(&self) -> usize {
        self.line
    }

    /// 1-based column (in characters) of the offending input.
    pub fn column(&self) -> usize {
        self.column
    }

    /// What is wrong, without position or hint.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl fmt::Display for PredicateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.multiline {
            write!(
                f,
                "{} at line {}, column {}",
                self.reason, self.line, self.column
            )?;
        } else {
            write!(f, "{} at column {}", self.reason, self.column)?;
        }
        if let Some(hint) = &self.hint {
            write!(f, "; {hint}")?;
        }
        Ok(())
    }
}

impl std::error::Error for PredicateError {}

// ---------------------------------------------------------------------------
// Typed syntax tree. Separate enums per type make ill-typed trees
// unrepresentable, which is what lets evaluation be infallible.

#[derive(Debug, Clone, PartialEq, Eq)]
enum BoolExpr {
    Lit(bool),
    Not(Box<BoolExpr>),
    /// At least two operands, none of them an `And` (nested ones are merged).
    And(Vec<BoolExpr>),
    /// At least two operands, none of them an `Or`.
    Or(Vec<BoolExpr>),
    StrEq(StrExpr, StrExpr),
    StrNe(StrExpr, StrExpr),
    Contains(SetExpr, StrExpr),
    ContainsAny(SetExpr, SetExpr),
    ContainsAll(SetExpr, SetExpr),
    IsEmpty(SetExpr),
    /// Minutes of the day of the start and end, checked at parse time.
    ClockBetween(TimeExpr, (u16, String), (u16, String)),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TimeExpr {
    Created,
    Expiry,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MapKind {
    Annotations,
    Traits,
    LabelsUnion,
    LabelsIntersection,
}

impl MapKind {
    fn name(self) -> &'static str {
        match self {
            MapKind::Annotations => VAR_ANNOTATIONS,
            MapKind::Traits => VAR_TRAITS,
            MapKind::LabelsUnion => VAR_LABELS_UNION,
            MapKind::LabelsIntersection => VAR_LABELS_INTERSECTION,
        }
    }

    fn get<'x>(self, f: &RequestFacts<'x>) -> &'x BTreeMap<String, Vec<String>> {
        match self {
            MapKind::Annotations => f.system_annotations,
            MapKind::Traits => f.user_traits,
            MapKind::LabelsUnion => f.resource_labels_union,
            MapKind::LabelsIntersection => f.resource_labels_intersection,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum StrExpr {
    Lit(String),
    User,
    RequestReason,
    PluginName,
    Day(TimeExpr),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum SetExpr {
    Roles,
    SuggestedReviewers,
    Entry(MapKind, StrExpr),
    Literal(Vec<StrExpr>),
}

/// Appends `e` to the operands of an `&&` (`and`) or `||`, merging an operand
/// of the same kind so that the tree shape does not depend on grouping.
fn push_flat(parts: &mut Vec<BoolExpr>, e: BoolExpr, and: bool) {
    match e {
        BoolExpr::And(xs) if and => parts.extend(xs),
        BoolExpr::Or(xs) if !and => parts.extend(xs),
        e => parts.push(e),
    }
}

impl BoolExpr {
    fn eval(&self, f: &RequestFacts<'_>) -> bool {
        match self {
            BoolExpr::Lit(b) => *b,
            BoolExpr::Not(x) => !x.eval(f),
            BoolExpr::And(xs) => xs.iter().all(|x| x.eval(f)),
            BoolExpr::Or(xs) => xs.iter().any(|x| x.eval(f)),
            BoolExpr::StrEq(a, b) => a.eval(f) == b.eval(f),
            BoolExpr::StrNe(a, b) => a.eval(f) != b.eval(f),
            BoolExpr::Contains(s, x) => s.items(f).contains(&x.eval(f)),
            BoolExpr::ContainsAny(a, b) => {
                let a = a.items(f);
                b.items(f).iter().any(|v| a.contains(v))
            }
            // Upstream quirk, kept on purpose: nothing "contains all of" an
            // empty set.
            BoolExpr::ContainsAll(a, b) => {
                let (a, b) = (a.items(f), b.items(f));
                !b.is_empty() && b.iter().all(|v| a.contains(v))
            }
            BoolExpr::IsEmpty(s) => s.items(f).is_empty(),
            BoolExpr::ClockBetween(t, (start, _), (end, _)) => {
                let now = minute_of_day(t.eval(f));
                // Whole minutes from `clock`; the seconds decide at the bounds.
                let (m, exact) = (now.0, now.1 == 0);
                (m > *start || (m == *start && !exact)) && m < *end
            }
        }
    }

    /// Whether some map the expression indexes satisfies `pick`.
    fn reads_map(&self, pick: &dyn Fn(MapKind) -> bool) -> bool {
        let set = |s: &SetExpr| matches!(s, SetExpr::Entry(m, _) if pick(*m));
        match self {
            BoolExpr::Lit(_) | BoolExpr::StrEq(..) | BoolExpr::StrNe(..) | BoolExpr::ClockBetween(..) => false,
            BoolExpr::Not(x) => x.reads_map(pick),
            BoolExpr::And(xs) | BoolExpr::Or(xs) => xs.iter().any(|x| x.reads_map(pick)),
            BoolExpr::Contains(s, _) | BoolExpr::IsEmpty(s) => set(s),
            BoolExpr::ContainsAny(a, b) | BoolExpr::ContainsAll(a, b) => set(a) || set(b),
        }
    }

    /// Binding strength when printed; higher binds tighter.
    fn precedence(&self) -> u8 {
        match self {
            BoolExpr::Or(_) => 1,
            BoolExpr::And(_) => 2,
            BoolExpr::StrEq(..) | BoolExpr::StrNe(..) => 3,
            BoolExpr::Not(_) => 4,
            _ => 5,
        }
    }

    /// Writes `self`, parenthesised if it binds looser than `min`.
    fn write(&self, f: &mut fmt::Formatter<'_>, min: u8) -> fmt::Result {
        let paren = self.precedence() < min;
        if paren {
            f.write_str("(")?;
        }
        match self {
            BoolExpr::Lit(b) => write!(f, "{b}")?,
            BoolExpr::Not(x) => {
                f.write_str("!")?;
                x.write(f, 4)?;
            }
            BoolExpr::And(xs) | BoolExpr::Or(xs) => {
                let (op, min) = match self {
                    BoolExpr::And(_) => (" && ", 3),
                    _ => (" || ", 2),
                };
                for (i, x) in xs.iter().enumerate() {
                    if i > 0 {
                        f.write_str(op)?;
                    }
                    x.write(f, min)?;
                }
            }
            BoolExpr::StrEq(a, b) => write!(f, "{a} == {b}")?,
            BoolExpr::StrNe(a, b) => write!(f, "{a} != {b}")?,
            // Method form: never nests deeper than the function form, so the
            // printed condition stays within the depth limit it was parsed under.
            BoolExpr::Contains(s, x) => write!(f, "{s}.contains({x})")?,
            BoolExpr::ContainsAny(a, b) => write!(f, "{a}.contains_any({b})")?,
            BoolExpr::ContainsAll(a, b) => write!(f, "{a}.contains_all({b})")?,
            BoolExpr::IsEmpty(s) => write!(f, "{s}.isempty()")?,
            BoolExpr::ClockBetween(t, (_, a), (_, b)) => {
                write!(f, "{t}.clock_between({}, {})", quote(a), quote(b))?
            }
        }
        if paren {
            f.write_str(")")?;
        }
        Ok(())
    }
}

impl StrExpr {
    fn eval<'x>(&'x self, f: &RequestFacts<'x>) -> &'x str {
        match self {
            StrExpr::Lit(s) => s,
            StrExpr::User => f.user,
            StrExpr::RequestReason => f.request_reason,
            StrExpr::PluginName => f.plugin_name,
            StrExpr::Day(t) => {
                let days = t.eval(f).div_euclid(86_400);
                // Go's zero time (day -719162 from 1970) is a Monday; 1970-01-01 a Thursday.
                const NAMES: [&str; 7] = ["Thursday", "Friday", "Saturday", "Sunday", "Monday", "Tuesday", "Wednesday"];
                NAMES[days.rem_euclid(7) as usize]
            }
        }
    }
}

/// Seconds since 1970 of `t`, Go's zero time when unset.
const GO_ZERO_SECS: i64 = -62_135_596_800;

impl TimeExpr {
    fn eval(self, f: &RequestFacts<'_>) -> i64 {
        let t = match self {
            TimeExpr::Created => f.creation_time,
            TimeExpr::Expiry => f.expiry,
        };
        match t.map(|t| t.duration_since(SystemTime::UNIX_EPOCH)) {
            None => GO_ZERO_SECS,
            Some(Ok(d)) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            // Before 1970: whole seconds towards the past.
            Some(Err(e)) => {
                let d = e.duration();
                -i64::try_from(d.as_secs()).unwrap_or(i64::MAX) - i64::from(d.subsec_nanos() > 0)
            }
        }
    }
}

impl fmt::Display for TimeExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TimeExpr::Created => VAR_CREATED,
            TimeExpr::Expiry => VAR_EXPIRY,
        })
    }
}

/// (minute of the UTC day, seconds past that minute) of a time in seconds.
fn minute_of_day(secs: i64) -> (u16, i64) {
    let of_day = secs.rem_euclid(86_400);
    ((of_day / 60) as u16, of_day % 60)
}

impl fmt::Display for StrExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StrExpr::Lit(s) => f.write_str(&quote(s)),
            StrExpr::User => f.write_str(VAR_USER),
            StrExpr::RequestReason => f.write_str(VAR_REASON),
            StrExpr::PluginName => f.write_str(VAR_PLUGIN),
            StrExpr::Day(t) => write!(f, "{t}.day()"),
        }
    }
}

impl SetExpr {
    fn items<'x>(&'x self, f: &RequestFacts<'x>) -> Vec<&'x str> {
        match self {
            SetExpr::Roles => f.roles.iter().map(String::as_str).collect(),
            SetExpr::SuggestedReviewers => {
                f.suggested_reviewers.iter().map(String::as_str).collect()
            }
            SetExpr::Entry(map, key) => map
                .get(f)
                .get(key.eval(f))
            .map(|vs| vs.iter().map(String::as_str).collect())
            .unwrap_or_default(),
            SetExpr::Literal(xs) => xs.iter().map(|x| x.eval(f)).collect(),
        }
    }
}

impl fmt::Display for SetExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SetExpr::Roles => f.write_str(VAR_ROLES),
            SetExpr::SuggestedReviewers => f.write_str(VAR_REVIEWERS),
            // `.key` instead of `["key"]` where possible: one level shallower.
            SetExpr::Entry(m, StrExpr::Lit(k)) if is_identifier(k) => {
                write!(f, "{}.{k}", m.name())
            }
            SetExpr::Entry(m, k) => write!(f, "{}[{k}]", m.name()),
            SetExpr::Literal(xs) => {
                f.write_str("set(")?;
                for (i, x) in xs.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{x}")?;
                }
                f.write_str(")")
            }
        }
    }
}

fn is_identifier(s: &str) -> bool {
    let mut bytes = s.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z' | b'A'..=b'Z' | b'_'))
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// A Go string literal for `s` that this module's lexer reads back as `s`.
fn quote(s: &str) -> String {
    crate::teleport::resources::go_quote(s)
}

// ---------------------------------------------------------------------------
// Parser: recursive descent that type-checks as it builds.

/// A parsed subexpression of any type, with the byte offset it starts at.
struct Typed {
    value: Value,
    pos: usize,
}

enum Value {
    Bool(BoolExpr),
    Str(StrExpr),
    Set(SetExpr),
    Time(TimeExpr),
    /// A map of sets (annotations, traits), only usable when indexed.
    Map(MapKind),
}

impl Value {
    fn type_name(&self) -> &'static str {
        match self {
            Value::Bool(_) => "boolean",
            Value::Str(_) => "string",
            Value::Set(_) => "set",
            Value::Time(_) => "time",
            Value::Map(_) => "map",
        }
    }
}

struct Parser<'s> {
    src: &'s str,
    toks: Vec<Token>,
    i: usize,
    depth: usize,
}

const EOF: Tok = Tok::Eof;

impl Parser<'_> {
    fn peek_at(&self, k: usize) -> &Tok {
        self.toks.get(self.i + k).map_or(&EOF, |t| &t.tok)
    }

    fn peek(&self) -> &Tok {
        self.peek_at(0)
    }

    fn pos(&self) -> usize {
        self.toks.get(self.i).map_or(self.src.len(), |t| t.pos)
    }

    fn bump(&mut self) -> Tok {
        let tok = self.peek().clone();
        if self.i < self.toks.len() {
            self.i += 1;
        }
        tok
    }

    fn err(&self, pos: usize, reason: impl Into<String>) -> PredicateError {
        PredicateError::at(self.src, pos, reason)
    }

    fn expect(&mut self, want: Tok, context: &str) -> Result<(), PredicateError> {
        if *self.peek() == want {
            self.bump();
            Ok(())
        } else {
            Err(self.err(
                self.pos(),
                format!(
                    "expected {} {context}, found {}",
                    want.describe(),
                    self.peek().describe()
                ),
            ))
        }
    }

    /// Enters one nesting level; see [`MAX_DEPTH`].
    fn enter(&mut self) -> Result<(), PredicateError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.err(
                self.pos(),
                format!("condition nests deeper than {MAX_DEPTH} levels"),
            ));
        }
        Ok(())
    }

    fn leave(&mut self) {
        self.depth -= 1;
    }

    fn mismatch(&self, t: &Typed, what: &str, want: &str) -> PredicateError {
        self.err(
            t.pos,
            format!("{what} must be a {want}, got {}", t.value.type_name()),
        )
    }

    fn want_bool(&self, t: Typed, what: &str) -> Result<BoolExpr, PredicateError> {
        match t.value {
            Value::Bool(b) => Ok(b),
            _ => Err(self.mismatch(&t, what, "boolean")),
        }
    }

    fn want_str(&self, t: Typed, what: &str) -> Result<StrExpr, PredicateError> {
        match t.value {
            Value::Str(s) => Ok(s),
            _ => Err(self.mismatch(&t, what, "string")),
        }
    }

    fn want_set(&self, t: Typed, what: &str) -> Result<SetExpr, PredicateError> {
        match t.value {
            Value::Set(s) => Ok(s),
            Value::Map(m) => Err(self.mismatch(&t, what, "set").hint(format!(
                "select one entry, e.g. {}[\"key\"]",
                m.name()
            ))),
            _ => Err(self.mismatch(&t, what, "set")),
        }
    }

    /// `a || b || ...` (also the entry point for every nested expression).
    fn parse_or(&mut self) -> Result<Typed, PredicateError> {
        self.enter()?;
        let first = self.parse_and()?;
        let result = if *self.peek() == Tok::Or {
            let pos = first.pos;
            let mut parts = Vec::new();
            push_flat(&mut parts, self.want_bool(first, "operand of ||")?, false);
            while *self.peek() == Tok::Or {
                self.bump();
                let rhs = self.parse_and()?;
                push_flat(&mut parts, self.want_bool(rhs, "operand of ||")?, false);
            }
            Typed {
                value: Value::Bool(BoolExpr::Or(parts)),
                pos,
            }
        } else {
            first
        };
        self.leave();
        Ok(result)
    }

    fn parse_and(&mut self) -> Result<Typed, PredicateError> {
        let first = self.parse_cmp()?;
        if *self.peek() != Tok::And {
            return Ok(first);
        }
        let pos = first.pos;
        let mut parts = Vec::new();
        push_flat(&mut parts, self.want_bool(first, "operand of &&")?, true);
        while *self.peek() == Tok::And {
            self.bump();
            let rhs = self.parse_cmp()?;
            push_flat(&mut parts, self.want_bool(rhs, "operand of &&")?, true);
        }
        Ok(Typed {
            value: Value::Bool(BoolExpr::And(parts)),
            pos,
        })
    }

    fn parse_cmp(&mut self) -> Result<Typed, PredicateError> {
        let mut lhs = self.parse_unary()?;
        loop {
            let ne = match self.peek() {
                Tok::Eq => false,
                Tok::Ne => true,
                _ => return Ok(lhs),
            };
            let what = if ne { "operand of !=" } else { "operand of ==" };
            self.bump();
            let rhs = self.parse_unary()?;
            let pos = lhs.pos;
            let a = self.want_str(lhs, what)?;
            let b = self.want_str(rhs, what)?;
            let value = if ne {
                BoolExpr::StrNe(a, b)
            } else {
                BoolExpr::StrEq(a, b)
            };
            lhs = Typed {
                value: Value::Bool(value),
                pos,
            };
        }
    }

    fn parse_unary(&mut self) -> Result<Typed, PredicateError> {
        if *self.peek() != Tok::Not {
            return self.parse_postfix();
        }
        let pos = self.pos();
        self.bump();
        self.enter()?;
        let operand = self.parse_unary()?;
        let inner = self.want_bool(operand, "operand of !")?;
        self.leave();
        Ok(Typed {
            value: Value::Bool(BoolExpr::Not(Box::new(inner))),
            pos,
        })
    }

    /// A primary expression followed by any `.method(...)` calls and
    /// `[key]` indexes.
    fn parse_postfix(&mut self) -> Result<Typed, PredicateError> {
        let mut cur = self.parse_primary()?;
        loop {
            match self.peek() {
                Tok::Dot => {
                    self.bump();
                    let name_pos = self.pos();
                    let Tok::Ident(name) = self.bump() else {
                        return Err(self.err(name_pos, "expected a method name after \".\""));
                    };
                    if *self.peek() != Tok::LParen {
                        return Err(self.err(
                            name_pos,
                            format!(
                                "field \"{name}\" cannot be read from a {} value",
                                cur.value.type_name()
                            ),
                        ));
                    }
                    cur = self.method_call(cur, &name, name_pos)?;
                }
                Tok::LBracket => cur = self.index(cur)?,
                _ => return Ok(cur),
            }
        }
    }

    fn parse_primary(&mut self) -> Result<Typed, PredicateError> {
        let pos = self.pos();
        match self.bump() {
            Tok::Str(s) => Ok(Typed {
                value: Value::Str(StrExpr::Lit(s)),
                pos,
            }),
            Tok::LParen => {
                let inner = self.parse_or()?;
                self.expect(Tok::RParen, "to close the \"(\"")?;
                Ok(Typed {
                    value: inner.value,
                    pos,
                })
            }
            Tok::Ident(first) => {
                let mut path = vec![first];
                let mut last_pos = pos;
                while *self.peek() == Tok::Dot {
                    let Tok::Ident(seg) = self.peek_at(1).clone() else {
                        break;
                    };
                    self.bump();
                    last_pos = self.pos();
                    self.bump();
                    path.push(seg);
                }
                if *self.peek() == Tok::LParen {
                    self.path_call(path, pos, last_pos)
                } else {
                    Ok(Typed {
                        value: self.variable(&path, pos)?,
                        pos,
                    })
                }
            }
            other => Err(self.err(
                pos,
                format!(
                    "expected a value (string, variable, function call or \"(\"), found {}",
                    other.describe()
                ),
            )),
        }
    }

    /// Resolves a dotted name used as a value.
    fn variable(&self, path: &[String], pos: usize) -> Result<Value, PredicateError> {
        let full = path.join(".");
        let value = match full.as_str() {
            "true" => Value::Bool(BoolExpr::Lit(true)),
            "false" => Value::Bool(BoolExpr::Lit(false)),
            VAR_USER => Value::Str(StrExpr::User),
            VAR_REASON => Value::Str(StrExpr::RequestReason),
            VAR_PLUGIN => Value::Str(StrExpr::PluginName),
            VAR_ROLES => Value::Set(SetExpr::Roles),
            VAR_REVIEWERS => Value::Set(SetExpr::SuggestedReviewers),
            VAR_CREATED => Value::Time(TimeExpr::Created),
            VAR_EXPIRY => Value::Time(TimeExpr::Expiry),
            _ => {
                if let Some(m) = MAPS.iter().find(|m| m.name() == full) {
                    return Ok(Value::Map(*m));
                }
                // `map.key` is accepted upstream as a shorthand for `map["key"]`.
                let entry = path.split_last().and_then(|(key, map)| {
                    let map = map.join(".");
                    MAPS.iter().find(|m| m.name() == map).map(|m| (*m, key.clone()))
                });
                if let Some((m, key)) = entry {
                    return Ok(Value::Set(SetExpr::Entry(m, StrExpr::Lit(key))));
                }
                return Err(self
                    .err(pos, format!("unknown variable \"{full}\""))
                    .hint(format!("supported variables: {}", VARIABLES.join(", "))));
            }
        };
        Ok(value)
    }

    /// `name(...)` where `name` is a dotted path starting at `pos` whose last
    /// segment is at `last_pos`: either a function, or a method called on the
    /// variable named by all but the last segment.
    fn path_call(
        &mut self,
        mut path: Vec<String>,
        pos: usize,
        last_pos: usize,
    ) -> Result<Typed, PredicateError> {
        let is_method = path.len() > 1 && VARIABLE_ROOTS.contains(&path[0].as_str());
        if !is_method {
            let name = path.join(".");
            if !FUNCTIONS.contains(&name.as_str()) {
                return Err(self
                    .err(pos, format!("unsupported function \"{name}\""))
                    .hint(format!("supported functions: {}", FUNCTIONS.join(", "))));
            }
            let args = self.parse_args()?;
            return self.function_call(&name, pos, args);
        }
        let method = path.pop().unwrap_or_default();
        let receiver = Typed {
            value: self.variable(&path, pos)?,
            pos,
        };
        self.method_call(receiver, &method, last_pos)
    }

    fn parse_args(&mut self) -> Result<Vec<Typed>, PredicateError> {
        self.expect(Tok::LParen, "to start the argument list")?;
        let mut args = Vec::new();
        while *self.peek() != Tok::RParen {
            args.push(self.parse_or()?);
            match self.peek() {
                Tok::Comma => {
                    self.bump();
                }
                Tok::RParen => {}
                other => {
                    return Err(self.err(
                        self.pos(),
                        format!(
                            "expected \",\" or \")\" in argument list, found {}",
                            other.describe()
                        ),
                    ));
                }
            }
        }
        self.bump();
        Ok(args)
    }

    fn arity(
        &self,
        name: &str,
        pos: usize,
        args: &[Typed],
        n: usize,
    ) -> Result<(), PredicateError> {
        if args.len() == n {
            return Ok(());
        }
        let plural = if n == 1 { "" } else { "s" };
        Err(self.err(
            pos,
            format!("{name} takes {n} argument{plural}, got {}", args.len()),
        ))
    }

    fn function_call(
        &self,
        name: &str,
        pos: usize,
        args: Vec<Typed>,
    ) -> Result<Typed, PredicateError> {
        let what = |i: usize| format!("argument {i} of {name}()");
        let label = format!("{name}()");
        if name == "day" || name == "clock_between" {
            let n = if name == "day" { 1 } else { 3 };
            self.arity(&label, pos, &args, n)?;
            let mut args = args.into_iter();
            let Some(t) = args.next() else {
                return Err(self.err(pos, format!("{label} is missing arguments")));
            };
            let t = self.want_time(t, &what(1))?;
            let value = self.time_call(name, t, args.collect(), &|i| what(i + 1))?;
            return Ok(Typed { value, pos });
        }
        let value = if name == "set" {
            let items = args
                .into_iter()
                .enumerate()
                .map(|(i, a)| self.want_str(a, &what(i + 1)))
                .collect::<Result<_, _>>()?;
            Value::Set(SetExpr::Literal(items))
        } else {
            let n = if name == "is_empty" { 1 } else { 2 };
            self.arity(&label, pos, &args, n)?;
            let mut args = args.into_iter();
            let (Some(a), b) = (args.next(), args.next()) else {
                return Err(self.err(pos, format!("{label} is missing arguments")));
            };
            let a = self.want_set(a, &what(1))?;
            Value::Bool(self.set_predicate(name, a, b, &what(2), pos)?)
        };
        Ok(Typed { value, pos })
    }

    fn method_call(
        &mut self,
        receiver: Typed,
        name: &str,
        name_pos: usize,
    ) -> Result<Typed, PredicateError> {
        if !METHODS.contains(&name) {
            return Err(self
                .err(name_pos, format!("unsupported method \"{name}\""))
                .hint(format!("supported methods: {}", METHODS.join(", "))));
        }
        let args = self.parse_args()?;
        let label = format!(".{name}()");
        if name == "day" || name == "clock_between" {
            self.arity(&label, name_pos, &args, if name == "day" { 0 } else { 2 })?;
            let pos = receiver.pos;
            let t = self.want_time(receiver, &format!("the receiver of {label}"))?;
            let value = self.time_call(name, t, args, &|i| format!("argument {i} of {label}"))?;
            return Ok(Typed { value, pos });
        }
        let n = if name == "isempty" { 0 } else { 1 };
        self.arity(&label, name_pos, &args, n)?;
        let pos = receiver.pos;
        let recv = self.want_set(receiver, &format!("the receiver of {label}"))?;
        let arg = args.into_iter().next();
        let value =
            self.set_predicate(name, recv, arg, &format!("the argument of {label}"), pos)?;
        Ok(Typed {
            value: Value::Bool(value),
            pos,
        })
    }

    /// Builds `contains*`/`is_empty` once the set operand is checked; `arg` is
    /// the second operand (present exactly when the arity needs it).
    fn set_predicate(
        &self,
        name: &str,
        set: SetExpr,
        arg: Option<Typed>,
        what: &str,
        pos: usize,
    ) -> Result<BoolExpr, PredicateError> {
        let Some(arg) = arg else {
            return Ok(BoolExpr::IsEmpty(set));
        };
        Ok(match name {
            "contains" => BoolExpr::Contains(set, self.want_str(arg, what)?),
            "contains_any" => BoolExpr::ContainsAny(set, self.want_set(arg, what)?),
            "contains_all" => BoolExpr::ContainsAll(set, self.want_set(arg, what)?),
            _ => return Err(self.err(pos, format!("{name} does not take an argument"))),
        })
    }

    fn want_time(&self, t: Typed, what: &str) -> Result<TimeExpr, PredicateError> {
        match t.value {
            Value::Time(x) => Ok(x),
            _ => Err(self.mismatch(&t, what, "time")),
        }
    }

    /// `day(t)` (no more arguments) or `clock_between(t, "HH:MM", "HH:MM")`;
    /// `what(i)` names argument `i` (1-based, after the time).
    fn time_call(
        &self,
        name: &str,
        t: TimeExpr,
        rest: Vec<Typed>,
        what: &dyn Fn(usize) -> String,
    ) -> Result<Value, PredicateError> {
        if name == "day" {
            return Ok(Value::Str(StrExpr::Day(t)));
        }
        let mut bounds = Vec::new();
        for (i, a) in rest.into_iter().enumerate() {
            let pos = a.pos;
            let StrExpr::Lit(s) = self.want_str(a, &what(i + 1))? else {
                return Err(self.err(pos, format!("{} must be a literal \"HH:MM\"", what(i + 1))));
            };
            let (h, m) = super::schedule::clock(&s)
                .map_err(|e| self.err(pos, format!("{} {s:?} is not a time of day: {e}", what(i + 1))))?;
            bounds.push((h as u16 * 60 + m as u16, s));
        }
        let (Some(end), Some(start)) = (bounds.pop(), bounds.pop()) else {
            return Err(self.err(0, "clock_between takes a start and an end"));
        };
        Ok(Value::Bool(BoolExpr::ClockBetween(t, start, end)))
    }

    /// `map[key]`; only the map variables can be indexed.
    fn index(&mut self, map: Typed) -> Result<Typed, PredicateError> {
        let open = self.pos();
        let Value::Map(kind) = map.value else {
            let maps: Vec<&str> = MAPS.iter().map(|m| m.name()).collect();
            return Err(self.err(
                open,
                format!(
                    "a {} value cannot be indexed; only {} can",
                    map.value.type_name(),
                    maps.join(", ")
                ),
            ));
        };
        self.bump();
        let key = self.parse_or()?;
        let key = self.want_str(key, "the key")?;
        self.expect(Tok::RBracket, "to close the \"[\"")?;
        Ok(Typed {
            value: Value::Set(SetExpr::Entry(kind, key)),
            pos: map.pos,
        })
    }
}

#[cfg(test)]
mod tests;
