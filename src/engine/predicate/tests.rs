use super::*;
use proptest::prelude::*;

/// Owned storage behind a `RequestFacts`.
#[derive(Debug, Clone)]
struct Req {
    user: String,
    roles: Vec<String>,
    reviewers: Vec<String>,
    reason: String,
    annotations: BTreeMap<String, Vec<String>>,
    plugin: String,
    traits: BTreeMap<String, Vec<String>>,
    /// Labels of each requested resource found.
    resources: Vec<labels::Labels>,
    union: labels::LabelSets,
    intersection: labels::LabelSets,
    created: Option<SystemTime>,
    expiry: Option<SystemTime>,
}

impl Req {
    /// Sets the requested resources and the two label maps derived from them.
    fn with_resources(mut self, resources: Vec<labels::Labels>) -> Self {
        self.union = labels::union(&resources);
        self.intersection = labels::intersection(&resources);
        self.resources = resources;
        self
    }

    fn facts(&self) -> RequestFacts<'_> {
        RequestFacts {
            user: &self.user,
            roles: &self.roles,
            suggested_reviewers: &self.reviewers,
            request_reason: &self.reason,
            system_annotations: &self.annotations,
            plugin_name: &self.plugin,
            user_traits: &self.traits,
            resource_labels_union: &self.union,
            resource_labels_intersection: &self.intersection,
            creation_time: self.created,
            expiry: self.expiry,
        }
    }
}

fn strings(xs: &[&str]) -> Vec<String> {
    xs.iter().map(|s| s.to_string()).collect()
}

fn sample() -> Req {
    Req {
        user: "alice".into(),
        roles: strings(&["editor", "access"]),
        reviewers: strings(&["bob@example.com"]),
        reason: "need \"prod\"\naccess".into(),
        annotations: BTreeMap::from([
            ("env".to_string(), strings(&["dev", "staging"])),
            ("team".to_string(), vec![]),
            ("a key".to_string(), strings(&["x"])),
        ]),
        plugin: "slack".into(),
        traits: BTreeMap::from([
            ("team".to_string(), strings(&["payments", "core"])),
            ("level".to_string(), strings(&["L1"])),
        ]),
        resources: Vec::new(),
        union: BTreeMap::new(),
        intersection: BTreeMap::new(),
        // 2025-08-11T14:30:00Z, a Monday; expires an hour and a half later.
        created: Some(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(MONDAY_1430)),
        expiry: Some(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(MONDAY_1430 + 5400)),
    }
    .with_resources(vec![
        node_labels(&[("env", "prod"), ("team", "payments"), ("os", "linux")]),
        node_labels(&[("env", "prod"), ("team", "core")]),
    ])
}

fn node_labels(pairs: &[(&str, &str)]) -> labels::Labels {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

const MONDAY_1430: u64 = 1_754_922_600;

fn eval(expr: &str) -> bool {
    let cond = Condition::parse(expr).unwrap_or_else(|e| panic!("{expr:?} failed: {e}"));
    cond.matches(&sample().facts())
}

#[test]
fn evaluates_every_form() {
    let cases: &[(&str, bool)] = &[
        // literals
        ("true", true),
        ("false", false),
        // string variables and comparisons
        (r#"access_request.spec.user == "alice""#, true),
        (r#"access_request.spec.user == "bob""#, false),
        (r#"access_request.spec.user != "bob""#, true),
        (r#"access_request.spec.user != "alice""#, false),
        (r#""alice" == access_request.spec.user"#, true),
        (r#"plugin.spec.name == "slack""#, true),
        (r#"plugin.spec.name == "discord""#, false),
        (
            r#"access_request.spec.request_reason == "need \"prod\"\naccess""#,
            true,
        ),
        (r#"access_request.spec.request_reason == """#, false),
        (
            r#"access_request.spec.user == access_request.spec.user"#,
            true,
        ),
        // contains: function and method form, every set source
        (r#"contains(access_request.spec.roles, "editor")"#, true),
        (r#"contains(access_request.spec.roles, "admin")"#, false),
        (r#"access_request.spec.roles.contains("access")"#, true),
        (r#"access_request.spec.roles.contains("admin")"#, false),
        (
            r#"contains(access_request.spec.suggested_reviewers, "bob@example.com")"#,
            true,
        ),
        (
            r#"access_request.spec.suggested_reviewers.contains("carol")"#,
            false,
        ),
        (
            r#"access_request.spec.system_annotations["env"].contains("dev")"#,
            true,
        ),
        (
            r#"access_request.spec.system_annotations.env.contains("staging")"#,
            true,
        ),
        (
            r#"access_request.spec.system_annotations["env"].contains("prod")"#,
            false,
        ),
        (
            r#"access_request.spec.system_annotations["missing"].contains("dev")"#,
            false,
        ),
        (
            r#"access_request.spec.system_annotations["a key"].contains("x")"#,
            true,
        ),
        (
            r#"contains(access_request.spec.system_annotations["env"], "dev")"#,
            true,
        ),
        (r#"contains(set("a", "b"), "b")"#, true),
        (r#"set("a", "b").contains("c")"#, false),
        (r#"set(access_request.spec.user).contains("alice")"#, true),
        (
            r#"access_request.spec.roles.contains(access_request.spec.user)"#,
            false,
        ),
        // annotation keys may be any string expression
        (
            r#"access_request.spec.system_annotations[("env")].contains("dev")"#,
            true,
        ),
        (
            r#"access_request.spec.system_annotations[plugin.spec.name].contains("dev")"#,
            false,
        ),
        // contains_any / contains_all
        (
            r#"contains_any(access_request.spec.roles, set("admin", "editor"))"#,
            true,
        ),
        (
            r#"contains_any(access_request.spec.roles, set("admin"))"#,
            false,
        ),
        (r#"contains_any(access_request.spec.roles, set())"#, false),
        (
            r#"access_request.spec.roles.contains_any(set("access"))"#,
            true,
        ),
        (
            r#"contains_all(access_request.spec.roles, set("editor", "access"))"#,
            true,
        ),
        (
            r#"contains_all(access_request.spec.roles, set("editor", "admin"))"#,
            false,
        ),
        (
            r#"contains_all(set("access"), access_request.spec.roles)"#,
            false,
        ),
        (
            r#"set("editor", "access", "x").contains_all(access_request.spec.roles)"#,
            true,
        ),
        // Upstream: nothing contains all of an empty set.
        (r#"contains_all(access_request.spec.roles, set())"#, false),
        (
            r#"contains_all(access_request.spec.roles, access_request.spec.system_annotations.team)"#,
            false,
        ),
        // is_empty / isempty
        (r#"is_empty(access_request.spec.roles)"#, false),
        (
            r#"is_empty(access_request.spec.system_annotations["team"])"#,
            true,
        ),
        (r#"is_empty(set())"#, true),
        (r#"!is_empty(access_request.spec.roles)"#, true),
        (
            r#"access_request.spec.system_annotations.nope.isempty()"#,
            true,
        ),
        (
            r#"access_request.spec.suggested_reviewers.isempty()"#,
            false,
        ),
        // boolean operators
        ("!true", false),
        ("!false", true),
        ("!!true", true),
        ("true && true", true),
        ("true && false", false),
        ("false && true", false),
        ("true || false", true),
        ("false || false", false),
        ("false || false || true", true),
        ("true && true && false", false),
        // precedence: ! > && > ||
        ("true || false && false", true),
        ("(true || false) && false", false),
        ("false && false || true", true),
        ("false && (false || true)", false),
        ("!false && false", false),
        ("!(false && false)", true),
        ("!true || true", true),
        (
            r#"!access_request.spec.roles.contains("admin") && access_request.spec.user == "alice""#,
            true,
        ),
        (
            r#"access_request.spec.user == "bob" || access_request.spec.user == "alice" && plugin.spec.name == "slack""#,
            true,
        ),
        // a method call's result can be grouped and negated
        (r#"!(access_request.spec.roles).contains("editor")"#, false),
        // whitespace and layout
        ("  \t\r\n true \n ", true),
        ("true&&!false", true),
        (
            "access_request . spec . roles . contains ( \"editor\" )",
            true,
        ),
        (
            "contains_all(\n  access_request.spec.roles,\n  set(\"editor\",),\n)",
            true,
        ),
        // string escapes
        (
            r#"set("\a\b\f\n\r\t\v\\\"").contains("\x07\x08\x0c\n\r\t\x0b\\\"")"#,
            true,
        ),
        (r#""\101\x42\u0043\U00000044" == "ABCD""#, true),
        (r#""\u00e9\U0001F600" == "é😀""#, true),
        ("`raw \\n \"x\"` == \"raw \\\\n \\\"x\\\"\"", true),
        ("`a\r\nb` == \"a\\nb\"", true),
        (r#""" == """#, true),
        (r#""ünïcödé" == "ünïcödé""#, true),
    ];
    for (expr, want) in cases {
        assert_eq!(eval(expr), *want, "{expr}");
    }
}

#[test]
fn evaluates_traits_and_times() {
    // The sample request: created Monday 14:30:00 UTC, expiring 16:00:00;
    // traits team = payments, core and level = L1.
    let cases: &[(&str, bool)] = &[
        (r#"user.traits["team"].contains("payments")"#, true),
        (r#"user.traits.team.contains("sales")"#, false),
        (r#"contains_any(user.traits["level"], set("L1", "L2"))"#, true),
        (r#"user.traits["missing"].isempty()"#, true),
        (r#"set("payments", "core", "x").contains_all(user.traits["team"])"#, true),
        (r#"user.traits[access_request.spec.user].isempty()"#, true),
        (r#"day(access_request.spec.creation_time) == "Monday""#, true),
        (r#"access_request.spec.creation_time.day() == "Tuesday""#, false),
        (r#"access_request.spec.expiry.day() == "Monday""#, true),
        (r#"access_request.spec.creation_time.clock_between("14:00", "15:00")"#, true),
        (r#"access_request.spec.creation_time.clock_between("9:00", "14:30")"#, false),
        (r#"access_request.spec.creation_time.clock_between("14:30", "15:00")"#, false),
        (r#"clock_between(access_request.spec.creation_time, "14:29", "14:31")"#, true),
        (r#"clock_between(access_request.spec.expiry, "15:00", "16:00")"#, false),
        (r#"clock_between(access_request.spec.expiry, "15:59", "16:01")"#, true),
        (r#"!access_request.spec.creation_time.clock_between("15:00", "14:00")"#, true),
    ];
    for (expr, want) in cases {
        assert_eq!(eval(expr), *want, "{expr}");
        let printed = Condition::parse(expr).unwrap().to_string();
        assert_eq!(Condition::parse(&printed), Condition::parse(expr), "{expr} printed as {printed}");
    }
    // Without traits (the plugin may not read users) trait conditions are false.
    let mut r = sample();
    r.traits.clear();
    let c = Condition::parse(r#"user.traits["team"].contains("payments")"#).unwrap();
    assert!(!c.matches(&r.facts()));
    // An unset time reads as Go's zero time: Monday 00:00:00 UTC.
    r.created = None;
    let c = Condition::parse(r#"access_request.spec.creation_time.day() == "Monday""#).unwrap();
    assert!(c.matches(&r.facts()));
    let c = Condition::parse(r#"access_request.spec.creation_time.clock_between("00:00", "00:01")"#).unwrap();
    assert!(!c.matches(&r.facts()), "the start is excluded");
    // Before 1970: a Wednesday (1969-12-31) late at night.
    r.created = Some(SystemTime::UNIX_EPOCH - std::time::Duration::from_secs(60));
    let c = Condition::parse(r#"access_request.spec.creation_time.day() == "Wednesday" && access_request.spec.creation_time.clock_between("23:58", "23:59:00")"#);
    assert!(c.is_err(), "23:59:00 is not HH:MM");
    let c = Condition::parse(r#"access_request.spec.creation_time.day() == "Wednesday" && access_request.spec.creation_time.clock_between("23:58", "23:59")"#).unwrap();
    assert!(!c.matches(&r.facts()), "23:59:00 is the end, excluded");
}

#[test]
fn evaluates_resource_labels() {
    // The sample request names two nodes: env=prod, team=payments, os=linux
    // and env=prod, team=core.
    let union = "access_request.spec.resource_labels_union";
    let inter = "access_request.spec.resource_labels_intersection";
    let cases: Vec<(String, bool)> = vec![
        // Overlap: the shared pair is in both maps.
        (format!(r#"{inter}["env"].contains("prod")"#), true),
        (format!(r#"{union}["env"].contains("prod")"#), true),
        // Several values for one key: all in the union, none in the intersection.
        (format!(r#"{union}["team"].contains_all(set("payments", "core"))"#), true),
        (format!(r#"{union}.team.contains("core")"#), true),
        (format!(r#"{inter}["team"].isempty()"#), true),
        (format!(r#"contains_any({inter}["team"], set("payments", "core"))"#), false),
        // On one node only: in the union, not the intersection.
        (format!(r#"{union}["os"].contains("linux")"#), true),
        (format!(r#"{inter}.os.contains("linux")"#), false),
        // A key no node has is empty in both.
        (format!(r#"is_empty({union}["region"]) && is_empty({inter}["region"])"#), true),
        (format!(r#"{inter}[access_request.spec.user].isempty()"#), true),
        // The documented form: every requested resource has both labels.
        (format!(r#"{inter}["env"].contains("prod") && {inter}["team"].contains("payments")"#), false),
        (format!(r#"set("prod", "dev").contains_all({inter}["env"])"#), true),
    ];
    for (expr, want) in &cases {
        assert_eq!(eval(expr), *want, "{expr}");
        let c = Condition::parse(expr).unwrap();
        assert!(c.uses_resource_labels() && !c.uses_user_traits(), "{expr}");
        assert_eq!(Condition::parse(&c.to_string()).unwrap(), c, "{expr} printed as {c}");
    }

    let contains = |r: &Req, expr: &str| Condition::parse(expr).unwrap().matches(&r.facts());
    let env_prod = format!(r#"{inter}["env"].contains("prod")"#);
    let any_prod = format!(r#"{union}["env"].contains("prod")"#);
    // No resources (a role request, or none could be found): both maps are empty.
    let none = sample().with_resources(vec![]);
    assert!(!contains(&none, &env_prod) && !contains(&none, &any_prod));
    assert!(contains(&none, &format!(r#"{union}["env"].isempty()"#)));
    // Disjoint labels: the union has both, the intersection nothing.
    let disjoint = sample().with_resources(vec![node_labels(&[("env", "prod")]), node_labels(&[("env", "dev")])]);
    assert!(!contains(&disjoint, &env_prod) && contains(&disjoint, &any_prod));
    assert!(contains(&disjoint, &format!(r#"{union}["env"].contains_all(set("prod", "dev"))"#)));
    assert!(contains(&disjoint, &format!(r#"{inter}["env"].isempty()"#)));
    // One resource: each map is its labels.
    let one = sample().with_resources(vec![node_labels(&[("env", "dev")])]);
    assert!(contains(&one, &format!(r#"{inter}["env"].contains("dev")"#)));
    assert!(!contains(&one, &env_prod));

    // Other conditions read neither map.
    let c = Condition::parse(r#"user.traits["team"].contains("a") || access_request.spec.system_annotations.x.isempty()"#).unwrap();
    assert!(c.uses_user_traits() && !c.uses_resource_labels());
    // A string that merely names the variable is not a read of it.
    let c = Condition::parse(&format!(r#"access_request.spec.user == "{union}""#)).unwrap();
    assert!(!c.uses_resource_labels());
}

#[test]
fn documented_examples_parse() {
    // Conditions from Teleport's Access Monitoring Rule documentation and
    // its web UI's condition builder.
    for expr in [
        r#"contains_any(access_request.spec.roles, set("access"))"#,
        r#"access_request.spec.roles.contains("your_role_name")"#,
        r#"!is_empty(access_request.spec.roles)"#,
        r#"access_request.spec.user == "example_user""#,
        r#"set("role_1", "role_2").contains_all(access_request.spec.roles)"#,
        "contains_all(set(\"access\"), access_request.spec.roles) &&\n    access_request.spec.user != \"\"",
        r#"contains_any(user.traits["team"], set("dev"))"#,
        "contains_all(set(\"access\"), access_request.spec.roles) &&\n    access_request.spec.resource_labels_intersection[\"env\"].contains(\"dev\") &&\n    access_request.spec.resource_labels_intersection[\"service\"].contains(\"test\")",
        r#"access_request.spec.creation_time.day() == "Monday" && access_request.spec.creation_time.clock_between("09:00", "17:00")"#,
    ] {
        Condition::parse(expr).unwrap_or_else(|e| panic!("{expr}: {e}"));
    }
}

fn err(expr: &str) -> String {
    match Condition::parse(expr) {
        Ok(c) => panic!("{expr:?} parsed as {c}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn rejects_with_specific_messages() {
    let funcs = "supported functions: clock_between, contains, contains_all, contains_any, day, is_empty, set";
    let vars = "supported variables: access_request.spec.roles, \
                access_request.spec.suggested_reviewers, access_request.spec.user, \
                access_request.spec.request_reason, access_request.spec.system_annotations, \
                user.traits, access_request.spec.resource_labels_union, \
                access_request.spec.resource_labels_intersection, \
                access_request.spec.creation_time, access_request.spec.expiry, \
                plugin.spec.name";
    let methods = "supported methods: clock_between, contains, contains_all, contains_any, day, isempty";
    let ops = "supported operators: !, &&, ||, ==, !=";
    let cases: Vec<(&str, String)> = vec![
        // empty
        ("", "empty condition at column 1".into()),
        ("  \n ", "empty condition at line 2, column 2".into()),
        // unsupported functions, methods and variables
        (
            r#"true && regexp.match(access_request.spec.user, "^a")"#,
            format!(r#"unsupported function "regexp.match" at column 9; {funcs}"#),
        ),
        (
            r#"has_prefix(access_request.spec.user, "a")"#,
            format!(r#"unsupported function "has_prefix" at column 1; {funcs}"#),
        ),
        (
            r#"hasPrefix(access_request.spec.user, "a")"#,
            format!(r#"unsupported function "hasPrefix" at column 1; {funcs}"#),
        ),
        (
            r#"strings.upper("a") == "A""#,
            format!(r#"unsupported function "strings.upper" at column 1; {funcs}"#),
        ),
        (
            r#"access_request.spec.roles.has_labels("a")"#,
            format!(r#"unsupported method "has_labels" at column 27; {methods}"#),
        ),
        (
            r#"set("a").add("b").contains("b")"#,
            format!(r#"unsupported method "add" at column 10; {methods}"#),
        ),
        (
            r#"access_request.spec.roles.contains ("x").remove("x")"#,
            format!(r#"unsupported method "remove" at column 42; {methods}"#),
        ),
        (
            r#"access_request.spec.resource_labels_union.contains("prod")"#,
            "the receiver of .contains() must be a set, got map at column 1; select one entry, \
             e.g. access_request.spec.resource_labels_union[\"key\"]"
                .into(),
        ),
        (
            r#"access_request.spec.resource_labels_intersection.env.prod.contains("x")"#,
            format!(
                r#"unknown variable "access_request.spec.resource_labels_intersection.env.prod" at column 1; {vars}"#
            ),
        ),
        // has_labels and requested_resources existed upstream for a while and were removed.
        (
            r#"access_request.spec.requested_resources.has_labels("env", "prod")"#,
            format!(r#"unknown variable "access_request.spec.requested_resources" at column 1; {vars}"#),
        ),
        // times
        (
            r#"access_request.spec.creation_time == "x""#,
            "operand of == must be a string, got time at column 1".into(),
        ),
        (
            r#"access_request.spec.creation_time.contains("x")"#,
            "the receiver of .contains() must be a set, got time at column 1".into(),
        ),
        (
            r#"day(access_request.spec.roles) == "Monday""#,
            "argument 1 of day() must be a time, got set at column 5".into(),
        ),
        (
            r#"access_request.spec.creation_time.clock_between("9:00")"#,
            ".clock_between() takes 2 arguments, got 1 at column 35".into(),
        ),
        (
            r#"access_request.spec.creation_time.clock_between("24:00", "25:00")"#,
            r#"argument 1 of .clock_between() "24:00" is not a time of day: hour out of range at column 49"#.into(),
        ),
        (
            r#"clock_between(access_request.spec.expiry, "09:00", access_request.spec.user)"#,
            r#"argument 3 of clock_between() must be a literal "HH:MM" at column 52"#.into(),
        ),
        (
            r#"user.traits.contains("x")"#,
            "the receiver of .contains() must be a set, got map at column 1; select one entry, e.g. user.traits[\"key\"]".into(),
        ),
        (
            r#"access_request.spec.rolez.contains("x")"#,
            format!(r#"unknown variable "access_request.spec.rolez" at column 1; {vars}"#),
        ),
        (
            r#"access_request.spec.system_annotationsX.y.contains("x")"#,
            format!(r#"unknown variable "access_request.spec.system_annotationsX.y" at column 1; {vars}"#),
        ),
        ("alice", format!(r#"unknown variable "alice" at column 1; {vars}"#)),
        (
            r#"access_request.spec.roles.x.contains("a")"#,
            format!(r#"unknown variable "access_request.spec.roles.x" at column 1; {vars}"#),
        ),
        // type errors, all caught at parse time
        (
            "access_request.spec.user && true",
            "operand of && must be a boolean, got string at column 1".into(),
        ),
        (
            "true || access_request.spec.roles",
            "operand of || must be a boolean, got set at column 9".into(),
        ),
        ("!\"x\"", "operand of ! must be a boolean, got string at column 2".into()),
        (
            r#"access_request.spec.roles == "editor""#,
            "operand of == must be a string, got set at column 1".into(),
        ),
        (
            r#"access_request.spec.user != access_request.spec.roles"#,
            "operand of != must be a string, got set at column 29".into(),
        ),
        ("true == true", "operand of == must be a string, got boolean at column 1".into()),
        (
            r#""a" == "a" == "a""#,
            "operand of == must be a string, got boolean at column 1".into(),
        ),
        // ! binds tighter than ==, as in Go
        (
            r#"!access_request.spec.user == "a""#,
            "operand of ! must be a boolean, got string at column 2".into(),
        ),
        (
            r#"contains("a", "b")"#,
            "argument 1 of contains() must be a set, got string at column 10".into(),
        ),
        (
            r#"contains(access_request.spec.roles, set("b"))"#,
            "argument 2 of contains() must be a string, got set at column 37".into(),
        ),
        (
            r#"contains_any(access_request.spec.roles, "b")"#,
            "argument 2 of contains_any() must be a set, got string at column 41".into(),
        ),
        (
            r#"contains_all(true, set())"#,
            "argument 1 of contains_all() must be a set, got boolean at column 14".into(),
        ),
        (
            r#"set("a", access_request.spec.roles)"#,
            "argument 2 of set() must be a string, got set at column 10".into(),
        ),
        (
            r#"is_empty(access_request.spec.system_annotations)"#,
            format!(
                "argument 1 of is_empty() must be a set, got map at column 10; \
                 select one entry, e.g. {VAR_ANNOTATIONS}[\"key\"]"
            ),
        ),
        (
            r#"access_request.spec.user.contains("a")"#,
            "the receiver of .contains() must be a set, got string at column 1".into(),
        ),
        (
            r#"access_request.spec.roles.contains_all("a")"#,
            "the argument of .contains_all() must be a set, got string at column 40".into(),
        ),
        (
            r#"access_request.spec.system_annotations[access_request.spec.roles].isempty()"#,
            "the key must be a string, got set at column 40".into(),
        ),
        (
            r#"access_request.spec.roles["x"].isempty()"#,
            format!(
                "a set value cannot be indexed; only {VAR_ANNOTATIONS}, {VAR_TRAITS}, {VAR_LABELS_UNION}, \
                 {VAR_LABELS_INTERSECTION} can at column 26"
            ),
        ),
        (
            r#"access_request.spec.system_annotations"#,
            "the condition must be a boolean, got map at column 1".into(),
        ),
        ("\"yes\"", "the condition must be a boolean, got string at column 1".into()),
        (
            r#"set("a").contains("a").x"#,
            r#"field "x" cannot be read from a boolean value at column 24"#.into(),
        ),
        // arity
        (
            r#"contains(access_request.spec.roles)"#,
            "contains() takes 2 arguments, got 1 at column 1".into(),
        ),
        (
            r#"is_empty(set(), set())"#,
            "is_empty() takes 1 argument, got 2 at column 1".into(),
        ),
        (
            r#"access_request.spec.roles.contains("a", "b")"#,
            ".contains() takes 1 argument, got 2 at column 27".into(),
        ),
        (
            r#"access_request.spec.roles.isempty(set())"#,
            ".isempty() takes 0 arguments, got 1 at column 27".into(),
        ),
        // syntax
        ("true false", r#"unexpected identifier "false"; expected an operator (&&, ||, ==, !=) or the end of the condition at column 6"#.into()),
        ("true &&", "expected a value (string, variable, function call or \"(\"), found end of condition at column 8".into()),
        ("(true", r#"expected ")" to close the "(", found end of condition at column 6"#.into()),
        ("true)", r#"unexpected ")"; expected an operator (&&, ||, ==, !=) or the end of the condition at column 5"#.into()),
        (r#"set("a" "b")"#, r#"expected "," or ")" in argument list, found string "b" at column 9"#.into()),
        (r#"set("a",,)"#, r#"expected a value (string, variable, function call or "("), found "," at column 9"#.into()),
        (
            r#"access_request.spec.system_annotations["env"#,
            "unterminated string literal at column 40".into(),
        ),
        (
            r#"access_request.spec.system_annotations["env""#,
            r#"expected "]" to close the "[", found end of condition at column 45"#.into(),
        ),
        ("set(\"a\").(", r#"expected a method name after "." at column 10"#.into()),
        ("(true)(false)", r#"unexpected "("; expected an operator (&&, ||, ==, !=) or the end of the condition at column 7"#.into()),
        // lexical
        (r#"access_request.spec.user == 'a'"#, "single-quoted literals are not supported at column 29; use double quotes for strings".into()),
        ("access_request.spec.user == 42", "number literals are not supported at column 29; write values as double-quoted strings, e.g. \"42\"".into()),
        (r#"access_request.spec.user = "a""#, format!(r#"operator "=" is not supported at column 26; {ops}"#)),
        ("true & false", format!(r#"operator "&" is not supported at column 6; {ops}"#)),
        ("true | false", format!(r#"operator "|" is not supported at column 6; {ops}"#)),
        (r#"access_request.spec.user < "b""#, format!(r#"operator "<" is not supported at column 26; {ops}"#)),
        (r#"access_request.spec.user >= "b""#, format!(r#"operator ">" is not supported at column 26; {ops}"#)),
        ("-true", format!(r#"operator "-" is not supported at column 1; {ops}"#)),
        ("true; false", "unexpected character ';' at column 5".into()),
        ("tru\u{e9}", "unexpected character 'é' at column 4".into()),
        ("true\u{a0}", "unexpected character '\\u{a0}' at column 5".into()),
        ("\"abc", "unterminated string literal at column 1".into()),
        ("`abc", "unterminated raw string at column 1".into()),
        ("\"a\\", "unterminated string literal at column 1".into()),
        ("\"a\nb\" == \"\"", "newline in string literal at line 1, column 3; write it as \\n, or close the string".into()),
        (r#""\q" == """#, r#"unknown escape sequence "\q" at column 2"#.into()),
        (r#""\'" == """#, r#"unknown escape sequence "\'" at column 2"#.into()),
        (r#""\x4" == """#, r#"escape "\x" needs exactly 2 hex digits at column 2"#.into()),
        (r#""\u12g4" == """#, r#"escape "\u" needs exactly 4 hex digits at column 2"#.into()),
        (r#""\18" == """#, r#"escape "\1" needs exactly 3 octal digits at column 2"#.into()),
        (r#""\xff" == """#, r#"byte escape for 0xff is not valid UTF-8 on its own at column 2; write the character as \u00ff"#.into()),
        (r#""\377" == """#, r#"byte escape for 0xff is not valid UTF-8 on its own at column 2; write the character as \u00ff"#.into()),
        (r#""\ud800" == """#, r#"escape for 0xd800 is not a Unicode character at column 2"#.into()),
        (r#""\U00110000" == """#, r#"escape for 0x110000 is not a Unicode character at column 2"#.into()),
        // positions count characters, and lines in multi-line conditions
        (
            "\"é\" == \"é\" &&\n  nope",
            format!(r#"unknown variable "nope" at line 2, column 3; {vars}"#),
        ),
    ];
    for (expr, want) in cases {
        assert_eq!(err(expr), want, "{expr:?}");
    }
}

#[test]
fn error_accessors_report_position() {
    let e = Condition::parse("true &&\n  x").unwrap_err();
    assert_eq!((e.line(), e.column()), (2, 3));
    assert_eq!(e.reason(), r#"unknown variable "x""#);
}

#[test]
fn enforces_length_limit() {
    let ok = format!("true{}", " ".repeat(MAX_CONDITION_LEN - 4));
    assert!(Condition::parse(&ok).is_ok());
    let long = format!("{ok} ");
    assert_eq!(
        err(&long),
        format!(
            "condition is {} bytes long; the limit is {MAX_CONDITION_LEN} at column 1",
            MAX_CONDITION_LEN + 1
        )
    );
}

#[test]
fn enforces_depth_limit() {
    let nested = |n: usize| format!("{}true{}", "(".repeat(n), ")".repeat(n));
    // The top level is one level; each "(" adds one.
    assert!(eval(&nested(MAX_DEPTH - 1)));
    assert!(
        err(&nested(MAX_DEPTH)).starts_with("condition nests deeper than 64 levels at column 65")
    );
    let nots = |n: usize| format!("{}true", "!".repeat(n));
    assert!(!eval(&nots(MAX_DEPTH - 1)));
    assert!(err(&nots(MAX_DEPTH)).starts_with("condition nests deeper than 64 levels"));
    let sets = |n: usize| {
        let open = "access_request.spec.system_annotations[".repeat(n);
        format!("{open}\"k\"{}", "]".repeat(n))
    };
    assert!(err(&format!("is_empty({})", sets(100))).starts_with("condition nests deeper"));
    // Far past the limit, in every recursive position, fails cleanly instead
    // of overflowing the stack.
    let n = MAX_CONDITION_LEN / 2 - 8;
    for hostile in [
        "(".repeat(n),
        "!".repeat(n),
        "set(".repeat(n / 4),
        "contains(".repeat(n / 9),
        "access_request.spec.system_annotations[".repeat(n / 40),
    ] {
        assert!(err(&hostile).contains("nests deeper"), "{}", &hostile[..20]);
    }
}

#[test]
fn long_flat_chains_are_not_nesting() {
    let n = MAX_CONDITION_LEN / 10;
    let chain = vec!["true"; n].join(" && ");
    assert!(chain.len() <= MAX_CONDITION_LEN);
    assert!(eval(&chain));
    let chain = vec!["false"; n - 100].join(" || ");
    assert!(!eval(&chain));
}

#[test]
fn grouping_does_not_change_the_tree() {
    let a = Condition::parse("(true && false) && (true && true)").unwrap();
    let b = Condition::parse("true && false && true && true").unwrap();
    assert_eq!(a, b);
    let a = Condition::parse(r#"set("a").contains("a")"#).unwrap();
    let b = Condition::parse(r#"contains(set("a"), "a")"#).unwrap();
    assert_eq!(a, b);
    let a = Condition::parse(r#"access_request.spec.system_annotations.env.isempty()"#).unwrap();
    let b = Condition::parse(r#"is_empty(access_request.spec.system_annotations["env"])"#).unwrap();
    assert_eq!(a, b);
}

#[test]
fn display_is_canonical() {
    let cases = [
        ("true", "true"),
        ("((true))", "true"),
        ("true || false && !true", "true || false && !true"),
        (
            "(true || false) && !(true && false)",
            "(true || false) && !(true && false)",
        ),
        (
            r#"!(access_request.spec.user == "a") || plugin.spec.name != "b""#,
            r#"!(access_request.spec.user == "a") || plugin.spec.name != "b""#,
        ),
        (
            r#"contains(access_request.spec.roles, "x")"#,
            r#"access_request.spec.roles.contains("x")"#,
        ),
        (
            r#"contains_any(access_request.spec.suggested_reviewers, set("a", access_request.spec.request_reason))"#,
            r#"access_request.spec.suggested_reviewers.contains_any(set("a", access_request.spec.request_reason))"#,
        ),
        (
            r#"contains_all(set(), access_request.spec.system_annotations["x y"])"#,
            r#"set().contains_all(access_request.spec.system_annotations["x y"])"#,
        ),
        (
            r#"is_empty(access_request.spec.system_annotations["env"])"#,
            r#"access_request.spec.system_annotations.env.isempty()"#,
        ),
    ];
    for (input, want) in cases {
        assert_eq!(
            Condition::parse(input).unwrap().to_string(),
            want,
            "{input}"
        );
    }
    let quoted = Condition::parse("set(`a\"\\\t\r\n\u{1}é`).isempty()").unwrap();
    assert_eq!(quoted.to_string(), r#"set("a\"\\\t\n\u0001é").isempty()"#);
    assert_eq!(Condition::parse(&quoted.to_string()).unwrap(), quoted);
}

#[test]
fn restricted_to_plugin_matches_the_textual_rewrite() {
    for (name, cond) in [
        ("slack", r#"access_request.spec.roles.contains("editor")"#),
        ("we\"ird\\", "true && false"),
        ("mattermost", "false || true"),
    ] {
        let restricted = Condition::parse(cond).unwrap().restricted_to_plugin(name);
        let textual =
            Condition::parse(&format!("plugin.spec.name == {} && ({cond})", quote(name))).unwrap();
        assert_eq!(restricted, textual);
        let mut req = sample();
        let unguarded = Condition::parse(cond).unwrap().matches(&req.facts());
        req.plugin = name.to_string();
        assert_eq!(restricted.matches(&req.facts()), unguarded);
        req.plugin = format!("{name}-other");
        assert!(!restricted.matches(&req.facts()));
    }
}

#[test]
fn from_str_parses() {
    let c: Condition = "true".parse().unwrap();
    assert!(c.matches(&sample().facts()));
    assert!("nope".parse::<Condition>().is_err());
}

// ---------------------------------------------------------------------------
// Property tests

/// Whatever the input: no panic; and if it parses, evaluation works and the
/// canonical form parses back to the same condition.
fn check_any_input(input: &str) {
    if let Ok(cond) = Condition::parse(input) {
        let req = sample();
        let result = cond.matches(&req.facts());
        let printed = cond.to_string();
        let reparsed = Condition::parse(&printed)
            .unwrap_or_else(|e| panic!("{input:?} printed as {printed:?}, which fails: {e}"));
        assert_eq!(reparsed, cond, "{input:?} printed as {printed:?}");
        assert_eq!(reparsed.matches(&req.facts()), result);
    }
}

const SOUP: &[&str] = &[
    "access_request.spec.roles",
    "access_request.spec.suggested_reviewers",
    "access_request.spec.user",
    "access_request.spec.request_reason",
    "access_request.spec.system_annotations",
    "plugin.spec.name",
    "user.traits",
    "access_request",
    "spec",
    "env",
    "contains",
    "contains_any",
    "contains_all",
    "is_empty",
    "isempty",
    "set",
    "regexp.match",
    "true",
    "false",
    "\"editor\"",
    "\"alice\"",
    "\"dev\"",
    "\"\\u00e9\\n\"",
    "`raw`",
    "\"",
    "`",
    "\\",
    "(",
    ")",
    "[",
    "]",
    ".",
    ",",
    "!",
    "&&",
    "||",
    "==",
    "!=",
    "=",
    "&",
    "|",
    "<",
    "1",
    "'",
    ";",
    "é",
];

fn soup() -> impl Strategy<Value = String> {
    prop::collection::vec(
        (
            prop::sample::select(SOUP),
            prop::sample::select(&["", "", " ", "\n", "\t"][..]),
        ),
        0..40,
    )
    .prop_map(|parts| {
        parts
            .into_iter()
            .map(|(t, ws)| format!("{t}{ws}"))
            .collect()
    })
}

/// A reference model of well-typed conditions, rendered to source text with
/// as few parentheses as precedence allows (plus optional redundant ones),
/// and evaluated directly as an oracle.
#[derive(Debug, Clone)]
enum M {
    Lit(bool),
    Not(Box<M>),
    And(Box<M>, Box<M>),
    Or(Box<M>, Box<M>),
    Cmp(MStr, MStr, bool),
    Contains(MSet, MStr, bool),
    Any(MSet, MSet, bool),
    All(MSet, MSet, bool),
    Empty(MSet, bool),
    Paren(Box<M>),
}

#[derive(Debug, Clone)]
enum MStr {
    Lit(String),
    User,
    Reason,
    Plugin,
}

#[derive(Debug, Clone)]
enum MSet {
    Roles,
    Reviewers,
    Ann(MStr, bool),
    /// `resource_labels_union` (false) or `_intersection` (true), key, `.key` form.
    Labels(bool, MStr, bool),
    Lit(Vec<MStr>),
}

const WORDS: &[&str] = &[
    "alice",
    "bob",
    "editor",
    "access",
    "dev",
    "env",
    "slack",
    "",
    "we\"ird\\ \u{e9}",
];

fn m_str() -> impl Strategy<Value = MStr> {
    prop_oneof![
        prop::sample::select(WORDS).prop_map(|w| MStr::Lit(w.to_string())),
        Just(MStr::User),
        Just(MStr::Reason),
        Just(MStr::Plugin),
    ]
}

fn m_set() -> impl Strategy<Value = MSet> {
    prop_oneof![
        Just(MSet::Roles),
        Just(MSet::Reviewers),
        (m_str(), any::<bool>()).prop_map(|(k, dot)| MSet::Ann(k, dot)),
        (any::<bool>(), m_str(), any::<bool>()).prop_map(|(i, k, dot)| MSet::Labels(i, k, dot)),
        prop::collection::vec(m_str(), 0..4).prop_map(MSet::Lit),
    ]
}

fn m_bool() -> impl Strategy<Value = M> {
    let leaf = prop_oneof![
        any::<bool>().prop_map(M::Lit),
        (m_str(), m_str(), any::<bool>()).prop_map(|(a, b, ne)| M::Cmp(a, b, ne)),
        (m_set(), m_str(), any::<bool>()).prop_map(|(s, x, m)| M::Contains(s, x, m)),
        (m_set(), m_set(), any::<bool>()).prop_map(|(a, b, m)| M::Any(a, b, m)),
        (m_set(), m_set(), any::<bool>()).prop_map(|(a, b, m)| M::All(a, b, m)),
        (m_set(), any::<bool>()).prop_map(|(s, m)| M::Empty(s, m)),
    ];
    leaf.prop_recursive(6, 48, 2, |inner| {
        prop_oneof![
            inner.clone().prop_map(|x| M::Not(Box::new(x))),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| M::And(Box::new(a), Box::new(b))),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| M::Or(Box::new(a), Box::new(b))),
            inner.prop_map(|x| M::Paren(Box::new(x))),
        ]
    })
}

impl MStr {
    fn render(&self) -> String {
        match self {
            MStr::Lit(s) => quote(s),
            MStr::User => "access_request.spec.user".into(),
            MStr::Reason => "access_request.spec.request_reason".into(),
            MStr::Plugin => "plugin.spec.name".into(),
        }
    }
    fn eval(&self, r: &Req) -> String {
        match self {
            MStr::Lit(s) => s.clone(),
            MStr::User => r.user.clone(),
            MStr::Reason => r.reason.clone(),
            MStr::Plugin => r.plugin.clone(),
        }
    }
}

impl MSet {
    fn render(&self) -> String {
        match self {
            MSet::Roles => "access_request.spec.roles".into(),
            MSet::Reviewers => "access_request.spec.suggested_reviewers".into(),
            MSet::Ann(MStr::Lit(k), true) if is_identifier(k) => {
                format!("access_request.spec.system_annotations.{k}")
            }
            MSet::Ann(k, _) => format!("access_request.spec.system_annotations[{}]", k.render()),
            MSet::Labels(i, k, dot) => {
                let map = if *i { "intersection" } else { "union" };
                match k {
                    MStr::Lit(k) if *dot && is_identifier(k) => format!("access_request.spec.resource_labels_{map}.{k}"),
                    k => format!("access_request.spec.resource_labels_{map}[{}]", k.render()),
                }
            }
            MSet::Lit(xs) => {
                let xs: Vec<String> = xs.iter().map(MStr::render).collect();
                format!("set({})", xs.join(", "))
            }
        }
    }
    fn eval(&self, r: &Req) -> Vec<String> {
        match self {
            MSet::Roles => r.roles.clone(),
            MSet::Reviewers => r.reviewers.clone(),
            MSet::Ann(k, _) => r.annotations.get(&k.eval(r)).cloned().unwrap_or_default(),
            // Straight from the definitions, resource by resource.
            MSet::Labels(false, k, _) => {
                let key = k.eval(r);
                r.resources.iter().filter_map(|l| l.get(&key).cloned()).collect()
            }
            MSet::Labels(true, k, _) => {
                let key = k.eval(r);
                let values: Vec<Option<&String>> = r.resources.iter().map(|l| l.get(&key)).collect();
                match values.first() {
                    Some(Some(v)) if values.iter().all(|x| *x == Some(*v)) => vec![(*v).clone()],
                    _ => vec![],
                }
            }
            MSet::Lit(xs) => xs.iter().map(|x| x.eval(r)).collect(),
        }
    }
}

impl M {
    fn prec(&self) -> u8 {
        match self {
            M::Or(..) => 1,
            M::And(..) => 2,
            M::Cmp(..) => 3,
            M::Not(_) => 4,
            _ => 5,
        }
    }

    fn render(&self, min: u8) -> String {
        let s = match self {
            M::Lit(b) => b.to_string(),
            M::Not(x) => format!("!{}", x.render(4)),
            // Left-associative: a right operand of the same operator needs
            // parentheses to keep the model's shape.
            M::And(a, b) => format!("{} && {}", a.render(2), b.render(3)),
            M::Or(a, b) => format!("{} || {}", a.render(1), b.render(2)),
            M::Cmp(a, b, ne) => {
                format!(
                    "{} {} {}",
                    a.render(),
                    if *ne { "!=" } else { "==" },
                    b.render()
                )
            }
            M::Contains(s, x, true) => format!("{}.contains({})", s.render(), x.render()),
            M::Contains(s, x, false) => format!("contains({}, {})", s.render(), x.render()),
            M::Any(a, b, true) => format!("{}.contains_any({})", a.render(), b.render()),
            M::Any(a, b, false) => format!("contains_any({}, {})", a.render(), b.render()),
            M::All(a, b, true) => format!("{}.contains_all({})", a.render(), b.render()),
            M::All(a, b, false) => format!("contains_all({}, {})", a.render(), b.render()),
            M::Empty(s, true) => format!("{}.isempty()", s.render()),
            M::Empty(s, false) => format!("is_empty({})", s.render()),
            M::Paren(x) => format!("({})", x.render(0)),
        };
        if self.prec() < min {
            format!("({s})")
        } else {
            s
        }
    }

    fn eval(&self, r: &Req) -> bool {
        match self {
            M::Lit(b) => *b,
            M::Not(x) => !x.eval(r),
            M::And(a, b) => a.eval(r) && b.eval(r),
            M::Or(a, b) => a.eval(r) || b.eval(r),
            M::Cmp(a, b, ne) => (a.eval(r) == b.eval(r)) != *ne,
            M::Contains(s, x, _) => s.eval(r).contains(&x.eval(r)),
            M::Any(a, b, _) => {
                let a = a.eval(r);
                b.eval(r).iter().any(|v| a.contains(v))
            }
            M::All(a, b, _) => {
                let (a, b) = (a.eval(r), b.eval(r));
                !b.is_empty() && b.iter().all(|v| a.contains(v))
            }
            M::Empty(s, _) => s.eval(r).is_empty(),
            M::Paren(x) => x.eval(r),
        }
    }
}

fn words(max: usize) -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(prop::sample::select(WORDS).prop_map(String::from), 0..max)
}

fn request() -> impl Strategy<Value = Req> {
    (
        prop::sample::select(WORDS),
        words(4),
        words(3),
        prop::sample::select(WORDS),
        prop::collection::btree_map(
            prop::sample::select(WORDS).prop_map(String::from),
            words(3),
            0..3,
        ),
        prop::sample::select(WORDS),
        prop::collection::vec(
            prop::collection::btree_map(
                prop::sample::select(WORDS).prop_map(String::from),
                prop::sample::select(WORDS).prop_map(String::from),
                0..3,
            ),
            0..4,
        ),
    )
        .prop_map(
            |(user, roles, reviewers, reason, annotations, plugin, resources)| {
                Req {
                    user: user.into(),
                    roles,
                    reviewers,
                    reason: reason.into(),
                    traits: annotations.clone(),
                    annotations,
                    plugin: plugin.into(),
                    resources: Vec::new(),
                    union: BTreeMap::new(),
                    intersection: BTreeMap::new(),
                    created: None,
                    expiry: None,
                }
                .with_resources(resources)
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_strings_never_panic(input in any::<String>()) {
        check_any_input(&input);
    }

    #[test]
    fn printable_strings_never_panic(input in "\\PC{0,120}") {
        check_any_input(&input);
    }

    #[test]
    fn token_soup_never_panics(input in soup()) {
        check_any_input(&input);
    }

    #[test]
    fn well_typed_conditions_agree_with_the_model(model in m_bool(), req in request()) {
        let source = model.render(0);
        let cond = Condition::parse(&source)
            .unwrap_or_else(|e| panic!("{source:?} failed to parse: {e}"));
        prop_assert_eq!(cond.matches(&req.facts()), model.eval(&req), "{}", source);
        let reparsed = Condition::parse(&cond.to_string()).unwrap();
        prop_assert_eq!(&reparsed, &cond);
    }
}
