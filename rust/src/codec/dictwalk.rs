//! Walking an exact dict's entries straight from CPython's table layout.

use std::sync::atomic::{AtomicBool, Ordering};

use pyo3::ffi;
use pyo3::prelude::*;

// A third of encoding time went to calling PyDict_Next once per entry, so exact dicts are
// walked directly. The layout below is CPython's combined-table dict for 3.11 to 3.13
// (Include/internal/pycore_dict.h), identical in those versions for builds with the GIL;
// `init` enables the walk only there and everything else uses PyDict_Next.
static DIRECT_DICT: AtomicBool = AtomicBool::new(false);

#[repr(C)]
struct DictObject {
    ob_base: ffi::PyObject,
    ma_used: ffi::Py_ssize_t,
    ma_version_tag: u64,
    ma_keys: *mut DictKeys,
    ma_values: *mut std::ffi::c_void,
}

#[repr(C)]
struct DictKeys {
    dk_refcnt: ffi::Py_ssize_t,
    dk_log2_size: u8,
    dk_log2_index_bytes: u8,
    dk_kind: u8,
    dk_version: u32,
    dk_usable: ffi::Py_ssize_t,
    dk_nentries: ffi::Py_ssize_t,
    // followed by `char dk_indices[1 << dk_log2_index_bytes]`, then the entries
}

const DICT_KEYS_GENERAL: u8 = 0;
const DICT_KEYS_UNICODE: u8 = 1;

/// Enables the direct dict walk when the running interpreter has the layout above.
pub fn init(py: Python<'_>) -> PyResult<()> {
    let sys = py.import("sys")?;
    let abiflags: String = sys.getattr("abiflags")?.extract()?;
    // SAFETY: Py_Version is a constant exported by every CPython >= 3.11.
    let version = unsafe { ffi::Py_Version } >> 16;
    let supported = (0x030B..=0x030D).contains(&version) && !abiflags.contains('t');
    DIRECT_DICT.store(supported, Ordering::Relaxed);
    Ok(())
}

/// (key, value) pairs of an exact dict with a combined table, in insertion order, or None
/// when the dict must be walked with PyDict_Next (split table, unknown interpreter).
///
/// SAFETY: `obj` is an exact dict kept alive, and unchanged, by the caller; GIL held.
#[inline(always)]
pub(super) unsafe fn combined_entries(
    obj: *mut ffi::PyObject,
) -> Option<impl Iterator<Item = (*mut ffi::PyObject, *mut ffi::PyObject)>> {
    if !DIRECT_DICT.load(Ordering::Relaxed) {
        return None;
    }
    let dict = obj as *const DictObject;
    if !(*dict).ma_values.is_null() {
        return None;
    }
    let keys = (*dict).ma_keys;
    let indices = (keys as *const u8).add(std::mem::size_of::<DictKeys>());
    let entries = indices.add(1usize << (*keys).dk_log2_index_bytes);
    let n = (*keys).dk_nentries as usize;
    // Unicode-keyed tables store (key, value); general ones store (hash, key, value).
    let (stride, key_at) = match (*keys).dk_kind {
        DICT_KEYS_UNICODE => (2, 0),
        DICT_KEYS_GENERAL => (3, 1),
        _ => return None,
    };
    let slots = entries as *const *mut ffi::PyObject;
    Some((0..n).filter_map(move |i| {
        let key = *slots.add(i * stride + key_at);
        let val = *slots.add(i * stride + key_at + 1);
        // Deleted entries leave a null value behind.
        (!val.is_null()).then_some((key, val))
    }))
}
