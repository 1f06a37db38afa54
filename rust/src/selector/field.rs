//! Field selectors: parsing, escaping and matching.

use pyo3::prelude::*;
use pyo3::types::PyString;

use super::validate::go_quote;
use super::SelectorError;

#[derive(Clone, Debug)]
pub struct FieldTerm {
    pub field: String,
    pub value: String,
    pub negate: bool,
}

impl FieldTerm {
    pub fn matches(&self, actual: &str) -> bool {
        (actual == self.value) != self.negate
    }
}

/// A parsed field selector (`metadata.name=x,spec.nodeName!=`).
#[pyclass(frozen, module = "k8slite._native")]
#[derive(Clone, Debug)]
pub struct FieldSelector {
    pub terms: Vec<FieldTerm>,
}

/// Splits on commas that are not escaped with a backslash.
fn split_terms(text: &str) -> Vec<&str> {
    if text.is_empty() {
        return Vec::new();
    }
    let mut terms = Vec::new();
    let mut start = 0;
    let mut in_slash = false;
    for (i, c) in text.char_indices() {
        if in_slash {
            in_slash = false;
        } else if c == '\\' {
            in_slash = true;
        } else if c == ',' {
            terms.push(&text[start..i]);
            start = i + 1;
        }
    }
    terms.push(&text[start..]);
    terms
}

/// Splits at the first operator (`!=`, `==` or `=`, tried in that order at each position).
fn split_term(term: &str) -> Option<(&str, bool, &str)> {
    for i in 0..term.len() {
        let rest = &term.as_bytes()[i..];
        for (op, negate) in [("!=", true), ("==", false), ("=", false)] {
            if rest.starts_with(op.as_bytes()) {
                return Some((&term[..i], negate, &term[i + op.len()..]));
            }
        }
    }
    None
}

fn unescape_value(s: &str) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut in_slash = false;
    for c in s.chars() {
        if in_slash {
            match c {
                '\\' | ',' | '=' => out.push(c),
                _ => {
                    return Err(format!(
                        "invalid field selector: invalid escape sequence: \\{c}"
                    ))
                }
            }
            in_slash = false;
            continue;
        }
        match c {
            '\\' => in_slash = true,
            // Go prints the rune with %v, i.e. as its number.
            ',' | '=' => {
                return Err(format!(
                    "invalid field selector: unescaped character in value: {}",
                    c as u32
                ))
            }
            _ => out.push(c),
        }
    }
    if in_slash {
        return Err("invalid field selector: invalid escape sequence: \\".to_string());
    }
    Ok(out)
}

fn escape_value(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace(',', "\\,")
        .replace('=', "\\=")
}

impl FieldSelector {
    pub fn parse(text: &str) -> Result<FieldSelector, String> {
        let mut parts = split_terms(text);
        parts.sort();
        let mut terms = Vec::new();
        for part in parts {
            if part.is_empty() {
                continue;
            }
            let Some((field, negate, raw)) = split_term(part) else {
                return Err(format!(
                    "invalid selector: '{text}'; can't understand '{part}'"
                ));
            };
            let value = unescape_value(raw)?;
            // Upstream turns a term with neither field nor value into "everything".
            if field.is_empty() && value.is_empty() {
                continue;
            }
            terms.push(FieldTerm {
                field: field.to_string(),
                value,
                negate,
            });
        }
        Ok(FieldSelector { terms })
    }
}

#[pymethods]
impl FieldSelector {
    #[new]
    #[pyo3(signature = (text = ""))]
    fn py_new(text: &str) -> PyResult<Self> {
        FieldSelector::parse(text).map_err(SelectorError::new_err)
    }

    /// Missing fields count as "" (so `spec.nodeName=` selects unscheduled pods).
    fn matches(&self, fields: &Bound<'_, PyAny>) -> PyResult<bool> {
        for term in &self.terms {
            let actual = match fields.get_item(PyString::new(fields.py(), &term.field)) {
                Ok(v) if !v.is_none() => v.extract::<String>()?,
                _ => String::new(),
            };
            if !term.matches(&actual) {
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    /// (field, operator, value); operators: = and !=.
    fn requirements(&self) -> Vec<(String, &'static str, String)> {
        self.terms
            .iter()
            .map(|t| {
                (
                    t.field.clone(),
                    if t.negate { "!=" } else { "=" },
                    t.value.clone(),
                )
            })
            .collect()
    }

    /// The canonical text: terms written with `=` or `!=` and sorted, as parsing sorts
    /// them. Sorting again here matters when the input used `==`, which sorts differently
    /// from the `=` it is written back as; without it, parsing this text could reorder it.
    pub fn __str__(&self) -> String {
        let mut parts: Vec<String> = self
            .terms
            .iter()
            .map(|t| {
                let op = if t.negate { "!=" } else { "=" };
                format!("{}{op}{}", t.field, escape_value(&t.value))
            })
            .collect();
        parts.sort();
        parts.join(",")
    }

    fn __repr__(&self) -> String {
        format!("FieldSelector({})", go_quote(&self.__str__()))
    }
}
