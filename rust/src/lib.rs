//! Module wiring for `k8slite._native`; each part lives in its own file.
use pyo3::prelude::*;

mod cache;
mod codec;
mod gillock;
mod jsonscan;
mod sched;
mod selector;

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    codec::init(py)?;
    m.add_function(wrap_pyfunction!(codec::dumps, m)?)?;
    m.add_function(wrap_pyfunction!(codec::loads, m)?)?;
    m.add("DecodeError", py.get_type::<codec::DecodeError>())?;
    m.add_class::<selector::LabelSelector>()?;
    m.add_class::<selector::FieldSelector>()?;
    m.add("SelectorError", py.get_type::<selector::SelectorError>())?;
    m.add_class::<cache::WatchCache>()?;
    m.add("ExpiredError", py.get_type::<cache::ExpiredError>())?;
    sched::register(m)?;
    Ok(())
}
