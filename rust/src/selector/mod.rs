//! Label and field selectors with upstream's syntax, matching rules and error wording
//! (k8s.io/apimachinery pkg/labels and pkg/fields), usable from Python and from the cache.

use pyo3::exceptions::PyValueError;

mod field;
mod label;
mod validate;

pub use field::{FieldSelector, FieldTerm};
pub use label::LabelSelector;

pyo3::create_exception!(
    k8slite._native,
    SelectorError,
    PyValueError,
    "A selector that does not parse; the message is upstream's wording."
);

#[cfg(test)]
mod tests;
