//! Label selectors: the lexer, the parser and matching.

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyMapping, PyString};

use super::validate::{
    aggregate, go_quote, go_string_slice, invalid, label_key_errors, label_value_errors,
};
use super::SelectorError;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Equals,
    DoubleEquals,
    NotEquals,
    In,
    NotIn,
    Exists,
    DoesNotExist,
    GreaterThan,
    LessThan,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Equals => "=",
            Op::DoubleEquals => "==",
            Op::NotEquals => "!=",
            Op::In => "in",
            Op::NotIn => "notin",
            Op::Exists => "exists",
            Op::DoesNotExist => "!",
            Op::GreaterThan => "gt",
            Op::LessThan => "lt",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Requirement {
    pub key: String,
    pub op: Op,
    /// Sorted and without duplicates.
    pub values: Vec<String>,
    /// The bound of `gt`/`lt`, parsed once.
    bound: i64,
}

impl Requirement {
    /// labels.NewRequirement: `values` None stands for Go's nil slice (only from_dict).
    fn new(
        key: &str,
        op: Op,
        values: Option<Vec<String>>,
        path: Option<&str>,
    ) -> Result<Requirement, String> {
        let child = |name: &str| match path {
            Some(p) => format!("{p}.{name}"),
            None => name.to_string(),
        };
        let mut errs = Vec::new();
        let key_errs = label_key_errors(key);
        if !key_errs.is_empty() {
            errs.push(invalid(&child("key"), &go_quote(key), &key_errs.join("; ")));
        }
        let value_path = child("values");
        let vals = values.as_deref().unwrap_or(&[]);
        let shown = go_string_slice(values.as_deref());
        match op {
            Op::In | Op::NotIn if vals.is_empty() => errs.push(invalid(
                &value_path,
                &shown,
                "for 'in', 'notin' operators, values set can't be empty",
            )),
            Op::Equals | Op::DoubleEquals | Op::NotEquals if vals.len() != 1 => errs.push(invalid(
                &value_path,
                &shown,
                "exact-match compatibility requires one single value",
            )),
            Op::Exists | Op::DoesNotExist if !vals.is_empty() => errs.push(invalid(
                &value_path,
                &shown,
                "values set must be empty for exists and does not exist",
            )),
            Op::GreaterThan | Op::LessThan => {
                if vals.len() != 1 {
                    errs.push(invalid(
                        &value_path,
                        &shown,
                        "for 'Gt', 'Lt' operators, exactly one value is required",
                    ));
                }
                for (i, v) in vals.iter().enumerate() {
                    if v.parse::<i64>().is_err() {
                        errs.push(invalid(
                            &format!("{value_path}[{i}]"),
                            &go_quote(v),
                            "for 'Gt', 'Lt' operators, the value must be an integer",
                        ));
                    }
                }
            }
            _ => {}
        }
        for (i, v) in vals.iter().enumerate() {
            let value_errs = label_value_errors(v);
            if !value_errs.is_empty() {
                errs.push(invalid(
                    &format!("{value_path}[{i}][{key}]"),
                    &go_quote(v),
                    &value_errs.join("; "),
                ));
            }
        }
        if let Some(msg) = aggregate(errs) {
            return Err(msg);
        }
        let mut values = vals.to_vec();
        values.sort();
        values.dedup();
        let bound = values.first().and_then(|v| v.parse().ok()).unwrap_or(0);
        Ok(Requirement {
            key: key.to_string(),
            op,
            values,
            bound,
        })
    }

    /// Requirement.Matches: `get` looks a label up.
    pub fn matches<'a>(&self, get: impl Fn(&str) -> Option<&'a str>) -> bool {
        let found = get(&self.key);
        match self.op {
            Op::In | Op::Equals | Op::DoubleEquals => {
                found.is_some_and(|v| self.values.iter().any(|x| x == v))
            }
            Op::NotIn | Op::NotEquals => found.is_none_or(|v| !self.values.iter().any(|x| x == v)),
            Op::Exists => found.is_some(),
            Op::DoesNotExist => found.is_none(),
            Op::GreaterThan | Op::LessThan => match found.map(str::parse::<i64>) {
                Some(Ok(n)) => {
                    if self.op == Op::GreaterThan {
                        n > self.bound
                    } else {
                        n < self.bound
                    }
                }
                _ => false,
            },
        }
    }

    fn render(&self) -> String {
        let mut s = String::new();
        if self.op == Op::DoesNotExist {
            s.push('!');
        }
        s.push_str(&self.key);
        let sep = match self.op {
            Op::Equals => "=",
            Op::DoubleEquals => "==",
            Op::NotEquals => "!=",
            Op::In => " in (",
            Op::NotIn => " notin (",
            Op::GreaterThan => ">",
            Op::LessThan => "<",
            Op::Exists | Op::DoesNotExist => return s,
        };
        s.push_str(sep);
        s.push_str(&self.values.join(","));
        if matches!(self.op, Op::In | Op::NotIn) {
            s.push(')');
        }
        s
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Token {
    End,
    ClosedPar,
    Comma,
    DoesNotExist,
    DoubleEquals,
    Equals,
    GreaterThan,
    Identifier,
    In,
    LessThan,
    NotEquals,
    NotIn,
    OpenPar,
}

fn keyword(s: &str) -> Option<Token> {
    Some(match s {
        ")" => Token::ClosedPar,
        "," => Token::Comma,
        "!" => Token::DoesNotExist,
        "==" => Token::DoubleEquals,
        "=" => Token::Equals,
        ">" => Token::GreaterThan,
        "in" => Token::In,
        "<" => Token::LessThan,
        "!=" => Token::NotEquals,
        "notin" => Token::NotIn,
        "(" => Token::OpenPar,
        _ => return None,
    })
}

fn is_special(c: u8) -> bool {
    matches!(c, b'=' | b'!' | b'(' | b')' | b',' | b'>' | b'<')
}

fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | b'\n')
}

/// Splits a selector into tokens the way upstream's lexer does (a NUL byte ends the input,
/// runs of special characters take the longest known operator).
fn lex(text: &str) -> Vec<(Token, String)> {
    let b = text.as_bytes();
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    let mut out = Vec::new();
    let mut i = 0;
    loop {
        while i < end && is_space(b[i]) {
            i += 1;
        }
        if i >= end {
            out.push((Token::End, String::new()));
            return out;
        }
        let start = i;
        if is_special(b[i]) {
            let mut best = None;
            while i < end && is_special(b[i]) {
                match keyword(&text[start..=i]) {
                    Some(tok) => best = Some((tok, i + 1)),
                    None if best.is_some() => break,
                    None => {}
                }
                i += 1;
            }
            // Every special character is a token on its own, so `best` is always set.
            let (tok, stop) = best.unwrap_or((Token::Identifier, i));
            i = stop;
            out.push((tok, text[start..stop].to_string()));
        } else {
            while i < end && !is_special(b[i]) && !is_space(b[i]) {
                i += 1;
            }
            let word = String::from_utf8_lossy(&b[start..i]).into_owned();
            let tok = keyword(&word).unwrap_or(Token::Identifier);
            out.push((tok, word));
        }
    }
}

struct Parser {
    items: Vec<(Token, String)>,
    pos: usize,
}

const BINARY_OPERATORS: &str = "in, notin, =, ==, !=, gt, lt";

impl Parser {
    /// In the values context `in` and `notin` are plain identifiers.
    fn lookahead(&self, values: bool) -> (Token, &str) {
        let (tok, lit) = &self.items[self.pos];
        (fold(*tok, values), lit)
    }

    fn consume(&mut self, values: bool) -> (Token, String) {
        let (tok, lit) = self.items[self.pos].clone();
        self.pos += 1;
        (fold(tok, values), lit)
    }

    fn parse(&mut self) -> Result<Vec<Requirement>, String> {
        let mut reqs = Vec::new();
        loop {
            let (tok, lit) = self.lookahead(true);
            match tok {
                Token::Identifier | Token::DoesNotExist => {
                    let r = self
                        .requirement()
                        .map_err(|e| format!("unable to parse requirement: {e}"))?;
                    reqs.push(r);
                    let (t, l) = self.consume(true);
                    match t {
                        Token::End => return Ok(reqs),
                        Token::Comma => {
                            let (t2, l2) = self.lookahead(true);
                            if t2 != Token::Identifier && t2 != Token::DoesNotExist {
                                return Err(format!(
                                    "found '{l2}', expected: identifier after ','"
                                ));
                            }
                        }
                        _ => return Err(format!("found '{l}', expected: ',' or 'end of string'")),
                    }
                }
                Token::End => return Ok(reqs),
                _ => {
                    return Err(format!(
                        "found '{lit}', expected: !, identifier, or 'end of string'"
                    ))
                }
            }
        }
    }

    fn requirement(&mut self) -> Result<Requirement, String> {
        let (key, op) = self.key_and_inferred_operator()?;
        if let Some(op) = op {
            return Requirement::new(&key, op, Some(Vec::new()), None);
        }
        let op = self.operator()?;
        let values = match op {
            Op::In | Op::NotIn => self.value_set()?,
            _ => self.exact_value()?,
        };
        Requirement::new(&key, op, Some(values), None)
    }

    fn key_and_inferred_operator(&mut self) -> Result<(String, Option<Op>), String> {
        let mut op = None;
        let (mut tok, mut lit) = self.consume(true);
        if tok == Token::DoesNotExist {
            op = Some(Op::DoesNotExist);
            (tok, lit) = self.consume(true);
        }
        if tok != Token::Identifier {
            return Err(format!("found '{lit}', expected: identifier"));
        }
        let errs = label_key_errors(&lit);
        if !errs.is_empty() {
            return Err(invalid("<nil>", &go_quote(&lit), &errs.join("; ")));
        }
        let (next, _) = self.lookahead(true);
        if (next == Token::End || next == Token::Comma) && op.is_none() {
            op = Some(Op::Exists);
        }
        Ok((lit, op))
    }

    fn operator(&mut self) -> Result<Op, String> {
        let (tok, lit) = self.consume(false);
        Ok(match tok {
            Token::In => Op::In,
            Token::Equals => Op::Equals,
            Token::DoubleEquals => Op::DoubleEquals,
            Token::GreaterThan => Op::GreaterThan,
            Token::LessThan => Op::LessThan,
            Token::NotIn => Op::NotIn,
            Token::NotEquals => Op::NotEquals,
            _ => return Err(format!("found '{lit}', expected: {BINARY_OPERATORS}")),
        })
    }

    fn value_set(&mut self) -> Result<Vec<String>, String> {
        let (tok, lit) = self.consume(true);
        if tok != Token::OpenPar {
            return Err(format!("found '{lit}' expected: '('"));
        }
        let (tok, lit) = self.lookahead(true);
        let lit = lit.to_string();
        match tok {
            Token::Identifier | Token::Comma => {
                let values = self.identifiers()?;
                let (closing, _) = self.consume(true);
                if closing != Token::ClosedPar {
                    // Upstream names the token that opened the list here, not the culprit.
                    return Err(format!("found '{lit}', expected: ')'"));
                }
                Ok(values)
            }
            Token::ClosedPar => {
                self.consume(true);
                Ok(vec![String::new()])
            }
            _ => Err(format!("found '{lit}', expected: ',', ')' or identifier")),
        }
    }

    /// A (possibly empty) comma-separated list of (possibly empty) values.
    fn identifiers(&mut self) -> Result<Vec<String>, String> {
        let mut values: Vec<String> = Vec::new();
        loop {
            let (tok, lit) = self.consume(true);
            match tok {
                Token::Identifier => {
                    values.push(lit);
                    let (next, next_lit) = self.lookahead(true);
                    match next {
                        Token::Comma => continue,
                        Token::ClosedPar => return Ok(values),
                        _ => return Err(format!("found '{next_lit}', expected: ',' or ')'")),
                    }
                }
                Token::Comma => {
                    if values.is_empty() {
                        values.push(String::new());
                    }
                    let (next, _) = self.lookahead(true);
                    if next == Token::ClosedPar {
                        values.push(String::new());
                        return Ok(values);
                    }
                    if next == Token::Comma {
                        self.consume(true);
                        values.push(String::new());
                    }
                }
                _ => return Err(format!("found '{lit}', expected: ',', or identifier")),
            }
        }
    }

    fn exact_value(&mut self) -> Result<Vec<String>, String> {
        let (tok, _) = self.lookahead(true);
        if tok == Token::End || tok == Token::Comma {
            return Ok(vec![String::new()]);
        }
        let (tok, lit) = self.consume(true);
        if tok == Token::Identifier {
            return Ok(vec![lit]);
        }
        Err(format!("found '{lit}', expected: identifier"))
    }
}

fn fold(tok: Token, values: bool) -> Token {
    if values && matches!(tok, Token::In | Token::NotIn) {
        Token::Identifier
    } else {
        tok
    }
}

/// A parsed label selector (`a=b,c!=d,e in (f,g),h notin (i),j,!k`).
#[pyclass(frozen, module = "k8slite._native")]
#[derive(Clone, Debug)]
pub struct LabelSelector {
    /// Sorted by key (stable), as upstream sorts them.
    pub reqs: Vec<Requirement>,
    /// labels.Nothing(): what a null metav1.LabelSelector means.
    pub nothing: bool,
}

impl LabelSelector {
    pub fn parse(text: &str) -> Result<LabelSelector, String> {
        let mut parser = Parser {
            items: lex(text),
            pos: 0,
        };
        let mut reqs = parser.parse()?;
        reqs.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(LabelSelector {
            reqs,
            nothing: false,
        })
    }

    /// Whether this selector restricts nothing (so callers can skip label lookups).
    pub fn selects_all(&self) -> bool {
        !self.nothing && self.reqs.is_empty()
    }

    pub fn matches_with<'a>(&self, get: impl Fn(&str) -> Option<&'a str> + Copy) -> bool {
        !self.nothing && self.reqs.iter().all(|r| r.matches(get))
    }

    fn from_dict_inner(selector: &Bound<'_, PyAny>) -> Result<LabelSelector, String> {
        let shape = |what: &str| format!("invalid label selector: {what}");
        let get = |name: &str| -> Result<Option<Bound<'_, PyAny>>, String> {
            let value = selector.get_item(name).ok().filter(|v| !v.is_none());
            Ok(value)
        };
        if !selector.is_instance_of::<PyDict>() && selector.cast::<PyMapping>().is_err() {
            return Err(shape("must be a map"));
        }
        let match_labels = get("matchLabels")?;
        let match_expressions = get("matchExpressions")?;
        let mut reqs = Vec::new();
        if let Some(labels) = &match_labels {
            let labels = labels
                .cast::<PyDict>()
                .map_err(|_| shape("matchLabels must be a map of strings"))?;
            for (k, v) in labels.iter() {
                let (Ok(k), Ok(v)) = (k.extract::<String>(), v.extract::<String>()) else {
                    return Err(shape("matchLabels must be a map of strings"));
                };
                reqs.push(Requirement::new(&k, Op::Equals, Some(vec![v]), None)?);
            }
        }
        if let Some(exprs) = &match_expressions {
            let exprs = exprs
                .cast::<PyList>()
                .map_err(|_| shape("matchExpressions must be a list"))?;
            for expr in exprs.iter() {
                reqs.push(Self::expression(&expr).map_err(|e| match e {
                    ExprError::Shape(what) => shape(&what),
                    ExprError::Invalid(msg) => msg,
                })?);
            }
        }
        reqs.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(LabelSelector {
            reqs,
            nothing: false,
        })
    }

    fn expression(expr: &Bound<'_, PyAny>) -> Result<Requirement, ExprError> {
        let shape = |what: &str| ExprError::Shape(what.to_string());
        let field = |name: &str| expr.get_item(name).ok().filter(|v| !v.is_none());
        let key: String = match field("key") {
            Some(k) => k
                .extract()
                .map_err(|_| shape("matchExpressions[].key must be a string"))?,
            None => String::new(),
        };
        let operator: String = match field("operator") {
            Some(o) => o
                .extract()
                .map_err(|_| shape("matchExpressions[].operator must be a string"))?,
            None => String::new(),
        };
        let values: Option<Vec<String>> = match field("values") {
            Some(v) => Some(
                v.extract()
                    .map_err(|_| shape("matchExpressions[].values must be a list of strings"))?,
            ),
            None => None,
        };
        let op = match operator.as_str() {
            "In" => Op::In,
            "NotIn" => Op::NotIn,
            "Exists" => Op::Exists,
            "DoesNotExist" => Op::DoesNotExist,
            other => {
                return Err(ExprError::Invalid(format!(
                    "{} is not a valid label selector operator",
                    go_quote(other)
                )))
            }
        };
        // Upstream copies the list with append([]string(nil), ...), so an empty list is
        // reported as a nil one.
        let values = values.filter(|v| !v.is_empty());
        Requirement::new(&key, op, values, None).map_err(ExprError::Invalid)
    }
}

enum ExprError {
    Shape(String),
    Invalid(String),
}

#[pymethods]
impl LabelSelector {
    #[new]
    #[pyo3(signature = (text = ""))]
    fn py_new(text: &str) -> PyResult<Self> {
        LabelSelector::parse(text).map_err(SelectorError::new_err)
    }

    /// From a metav1.LabelSelector dict: None selects nothing, {} selects everything.
    #[staticmethod]
    fn from_dict(selector: Option<&Bound<'_, PyAny>>) -> PyResult<Self> {
        match selector {
            None => Ok(LabelSelector {
                reqs: Vec::new(),
                nothing: true,
            }),
            Some(s) => LabelSelector::from_dict_inner(s).map_err(SelectorError::new_err),
        }
    }

    fn matches(&self, labels: Option<&Bound<'_, PyAny>>) -> PyResult<bool> {
        if self.nothing {
            return Ok(false);
        }
        let mut found: Vec<Option<String>> = Vec::with_capacity(self.reqs.len());
        for r in &self.reqs {
            let value = match labels {
                None => None,
                Some(l) => match l.get_item(PyString::new(l.py(), &r.key)) {
                    Ok(v) if !v.is_none() => Some(v.extract::<String>()?),
                    _ => None,
                },
            };
            found.push(value);
        }
        Ok(self
            .reqs
            .iter()
            .zip(&found)
            .all(|(r, v)| r.matches(|_| v.as_deref())))
    }

    fn is_empty(&self) -> bool {
        self.selects_all()
    }

    /// (key, operator, values); operators: =, ==, !=, in, notin, exists, !, gt, lt.
    fn requirements(&self) -> Vec<(String, &'static str, Vec<String>)> {
        self.reqs
            .iter()
            .map(|r| (r.key.clone(), r.op.name(), r.values.clone()))
            .collect()
    }

    pub fn __str__(&self) -> String {
        self.reqs
            .iter()
            .map(Requirement::render)
            .collect::<Vec<_>>()
            .join(",")
    }

    fn __repr__(&self) -> String {
        if self.nothing {
            "LabelSelector.from_dict(None)".to_string()
        } else {
            format!("LabelSelector({})", go_quote(&self.__str__()))
        }
    }
}
