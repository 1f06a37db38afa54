//! JSON codec: `dumps` writes compact UTF-8 JSON straight from Python objects and `loads`
//! builds Python objects straight from bytes, with no intermediate tree in between.
//!
//! Both sides talk to CPython through its C API because the safe wrappers cost a type check,
//! a reference-count pair and often an allocation per value, which is most of the time spent
//! on a Pod. Every `unsafe` block relies on the same two facts unless it says otherwise: the
//! GIL is held for the whole call (both entry points take `Python<'_>`), and every pointer we
//! read is either borrowed from a live container we hold a reference to or owned by us.

use pyo3::exceptions::PyValueError;

mod decode;
mod dictwalk;
mod encode;
mod strcache;

pub use decode::loads;
pub use dictwalk::init;
pub use encode::dumps;

pyo3::create_exception!(
    k8slite._native,
    DecodeError,
    PyValueError,
    "Malformed JSON; the message names the problem and the byte offset."
);

/// Containers nested deeper than this are refused by both directions: it bounds native
/// recursion (so a hostile request body cannot overflow the stack) and catches cycles.
pub const MAX_DEPTH: u32 = 1000;

#[cfg(test)]
mod tests;
