//! Selector parsing, canonical forms, matching and upstream's error messages.

use std::collections::HashMap;

use super::validate::{go_quote, label_key_errors, label_value_errors};
use super::{FieldSelector, LabelSelector};

fn label(text: &str) -> LabelSelector {
    LabelSelector::parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"))
}

fn label_error(text: &str) -> String {
    match LabelSelector::parse(text) {
        Ok(sel) => panic!("{text:?} parsed as {:?}", sel.__str__()),
        Err(e) => e,
    }
}

fn matches(sel: &LabelSelector, labels: &[(&str, &str)]) -> bool {
    let map: HashMap<&str, &str> = labels.iter().copied().collect();
    sel.matches_with(|k| map.get(k).copied())
}

#[test]
fn label_selectors_print_canonically() {
    let text = "a=b,c!=d,e in (f,g),h notin (i),j,!k";
    assert_eq!(label(text).__str__(), text);
    // Requirements sort by key, values sort and lose duplicates, spaces go.
    assert_eq!(
        label("  tier in ( b , a, b ) ,  x ").__str__(),
        "tier in (a,b),x"
    );
    assert_eq!(label("z=1,a==2,m>3,n<4").__str__(), "a==2,m>3,n<4,z=1");
    assert_eq!(label("a=").__str__(), "a=");
    assert_eq!(label("").__str__(), "");
    assert!(label("").selects_all() && !label("a").selects_all());
}

#[test]
fn in_and_notin_are_plain_values_after_an_operator() {
    let sel = label("a in (in,notin)");
    assert_eq!(sel.reqs[0].values, ["in", "notin"]);
    assert!(matches(&sel, &[("a", "in")]));
}

#[test]
fn label_selectors_match_as_upstream() {
    let sel = label("env in (prod,staging),tier!=db,app,!legacy");
    assert!(matches(&sel, &[("env", "prod"), ("app", "x")]));
    assert!(matches(
        &sel,
        &[("env", "staging"), ("app", ""), ("tier", "web")]
    ));
    assert!(!matches(&sel, &[("env", "dev"), ("app", "x")]));
    assert!(!matches(
        &sel,
        &[("env", "prod"), ("app", "x"), ("tier", "db")]
    ));
    assert!(!matches(&sel, &[("env", "prod")]));
    assert!(!matches(
        &sel,
        &[("env", "prod"), ("app", "x"), ("legacy", "")]
    ));
    // notin and != also match an absent label.
    assert!(matches(&label("a notin (b)"), &[]));
    assert!(matches(&label("a!=b"), &[]));
    assert!(!matches(&label("a=b"), &[]));
}

#[test]
fn greater_and_less_than_compare_integers() {
    let gt = label("n>5");
    assert!(matches(&gt, &[("n", "6")]));
    assert!(!matches(&gt, &[("n", "5")]));
    assert!(!matches(&gt, &[("n", "x")]));
    assert!(!matches(&gt, &[]));
    let lt = label("n<3");
    assert!(matches(&lt, &[("n", "-2")]));
    assert!(!matches(&lt, &[("n", "3")]));
    // The bound is also a label value, so upstream refuses a negative one in the text form.
    assert!(label_error("n<-1").contains("Invalid value: \"-1\": a valid label must be"));
}

#[test]
fn label_parse_errors_carry_upstream_messages() {
    let cases = [
        (
            "x=(",
            "unable to parse requirement: found '(', expected: identifier",
        ),
        ("a=b c", "found 'c', expected: ',' or 'end of string'"),
        ("a,", "found '', expected: identifier after ','"),
        (
            ",a",
            "found ',', expected: !, identifier, or 'end of string'",
        ),
        (
            "a b",
            "unable to parse requirement: found 'b', expected: in, notin, =, ==, !=, gt, lt",
        ),
        (
            "x in a",
            "unable to parse requirement: found 'a' expected: '('",
        ),
        (
            "x in (a b)",
            "unable to parse requirement: found 'b', expected: ',' or ')'",
        ),
        (
            "x>a",
            "unable to parse requirement: values[0]: Invalid value: \"a\": for 'Gt', 'Lt' \
             operators, the value must be an integer",
        ),
        (
            "/a",
            "unable to parse requirement: <nil>: Invalid value: \"/a\": prefix part must be \
             non-empty",
        ),
    ];
    for (text, message) in cases {
        assert_eq!(label_error(text), message, "{text:?}");
    }
    let long = format!("x={}", "a".repeat(64));
    assert_eq!(
        label_error(&long),
        format!(
            "unable to parse requirement: values[0][x]: Invalid value: \"{}\": must be no more \
             than 63 bytes",
            "a".repeat(64)
        )
    );
}

#[test]
fn label_key_and_value_validation_use_upstream_wording() {
    assert!(label_key_errors("example.com/My_name-1").is_empty());
    assert!(label_value_errors("").is_empty());
    assert_eq!(
        label_key_errors("app:"),
        [
            "name part must consist of alphanumeric characters, '-', '_' or '.', and must start \
          and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', \
          regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
        ]
    );
    assert_eq!(
        label_key_errors("Example.com/a")[0],
        "prefix part a lowercase RFC 1123 subdomain must consist of lower case alphanumeric \
         characters, '-' or '.', and must start and end with an alphanumeric character (e.g. \
         'example.com', regex used for validation is \
         '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
    );
    assert!(label_key_errors("a/b/c")[0].starts_with("a valid label key must consist of"));
    assert_eq!(
        label_value_errors(&"v".repeat(64)),
        ["must be no more than 63 bytes"]
    );
}

#[test]
fn go_quote_escapes_like_percent_q() {
    assert_eq!(go_quote("a\"b\\c"), r#""a\"b\\c""#);
    assert_eq!(go_quote("\n\t\x01\x7f"), r#""\n\t\x01\x7f""#);
    assert_eq!(go_quote("é"), "\"é\"");
}

#[test]
fn field_selectors_unescape_and_print_canonically() {
    let sel = FieldSelector::parse(r"spec.nodeName!=,metadata.name=x\,y\=z\\").unwrap();
    let terms: Vec<(&str, bool, &str)> = sel
        .terms
        .iter()
        .map(|t| (t.field.as_str(), t.negate, t.value.as_str()))
        .collect();
    assert_eq!(
        terms,
        [
            ("metadata.name", false, r"x,y=z\"),
            ("spec.nodeName", true, "")
        ]
    );
    assert_eq!(sel.__str__(), r"metadata.name=x\,y\=z\\,spec.nodeName!=");
    assert_eq!(FieldSelector::parse("a==b").unwrap().__str__(), "a=b");
    assert!(FieldSelector::parse("").unwrap().terms.is_empty());
}

#[test]
fn field_terms_match_exactly_or_negated() {
    let sel = FieldSelector::parse("spec.nodeName=,status.phase!=Failed").unwrap();
    let (node, phase) = (&sel.terms[0], &sel.terms[1]);
    assert!(node.matches("") && !node.matches("n1"));
    assert!(phase.matches("Running") && !phase.matches("Failed"));
}

#[test]
fn field_parse_errors_carry_upstream_messages() {
    let error = |text: &str| FieldSelector::parse(text).expect_err(text);
    assert_eq!(
        error("abc"),
        "invalid selector: 'abc'; can't understand 'abc'"
    );
    assert_eq!(
        error(r"a=b\q"),
        r"invalid field selector: invalid escape sequence: \q"
    );
    assert_eq!(
        error("a=b=c"),
        "invalid field selector: unescaped character in value: 61"
    );
    assert_eq!(
        error(r"a=b\"),
        r"invalid field selector: invalid escape sequence: \"
    );
}
