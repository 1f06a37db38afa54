//! JSON codec: `dumps` writes compact UTF-8 JSON straight from Python objects and `loads`
//! builds Python objects straight from bytes, with no intermediate tree in between.
//!
//! Both sides talk to CPython through its C API because the safe wrappers cost a type check,
//! a reference-count pair and often an allocation per value, which is most of the time spent
//! on a Pod. Every `unsafe` block relies on the same two facts unless it says otherwise: the
//! GIL is held for the whole call (both entry points take `Python<'_>`), and every pointer we
//! read is either borrowed from a live container we hold a reference to or owned by us.

use std::cell::Cell;
use std::ffi::c_char;
use std::ptr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::jsonscan::{quote_char, swar};

pyo3::create_exception!(
    k8slite._native,
    DecodeError,
    PyValueError,
    "Malformed JSON; the message names the problem and the byte offset."
);

/// Containers nested deeper than this are refused by both directions: it bounds native
/// recursion (so a hostile request body cannot overflow the stack) and catches cycles.
pub const MAX_DEPTH: u32 = 1000;

// ------------------------------------------------------------------------------ encoding

thread_local! {
    // Size of the previous output: the next buffer starts a little larger, so a run of
    // similar objects allocates once each and never regrows.
    static SIZE_HINT: Cell<usize> = const { Cell::new(1024) };
}

/// Compact UTF-8 JSON of `obj` as bytes.
#[pyfunction]
pub fn dumps<'py>(py: Python<'py>, obj: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyBytes>> {
    let hint = SIZE_HINT.with(Cell::get);
    let mut enc = Encoder::new(py, hint)?;
    // SAFETY: `obj` is a live reference for the duration of the call and the GIL is held.
    match unsafe { enc.value(obj.as_ptr()) } {
        Ok(()) => {
            let out = enc.finish()?;
            let len = out.as_bytes().len();
            SIZE_HINT.with(|h| h.set((len + len / 4 + 64).clamp(128, 64 << 10)));
            Ok(out)
        }
        Err(Failed) => Err(enc.err.take().expect("failure recorded")),
    }
}

/// Marker for "the error is in `Encoder::err`": keeps the hot return type one register wide.
struct Failed;

type Step = Result<(), Failed>;

/// Room reserved before every value so scalars and punctuation can be written unchecked:
/// the longest scalar (an i64, a float, a literal) plus a separator is well under this.
const SCALAR_ROOM: usize = 48;

/// Writes through a raw cursor straight into the buffer of the bytes object it returns, so
/// the output is never copied (and the Vec bookkeeping of push/extend, a sizeable share in
/// profiles, is gone). Invariant: `out` is a bytes object that only we reference, of size
/// `end - base`, whose buffer starts at `base`; `base..cur` is the output so far.
struct Encoder<'py> {
    py: Python<'py>,
    out: *mut ffi::PyObject,
    base: *mut u8,
    cur: *mut u8,
    end: *mut u8,
    depth: u32,
    err: Option<PyErr>,
}

impl Drop for Encoder<'_> {
    fn drop(&mut self) {
        if !self.out.is_null() {
            // SAFETY: we own the only reference to `out` and hold the GIL.
            unsafe { ffi::Py_DECREF(self.out) };
        }
    }
}

// The `unsafe fn`s below take object pointers: callers pass live references (borrowed from
// the container being walked) and hold the GIL, as the module comment says.
impl<'py> Encoder<'py> {
    fn new(py: Python<'py>, capacity: usize) -> PyResult<Self> {
        let capacity = capacity.max(SCALAR_ROOM);
        // SAFETY: a null source asks for an uninitialised buffer of `capacity` bytes.
        let out = unsafe { ffi::PyBytes_FromStringAndSize(ptr::null(), capacity as isize) };
        if out.is_null() {
            return Err(PyErr::fetch(py));
        }
        // SAFETY: `out` is a new bytes object of `capacity` bytes.
        let base = unsafe { ffi::PyBytes_AsString(out) as *mut u8 };
        // SAFETY: within the buffer.
        let end = unsafe { base.add(capacity) };
        Ok(Encoder {
            py,
            out,
            base,
            cur: base,
            end,
            depth: 0,
            err: None,
        })
    }

    fn len(&self) -> usize {
        self.cur as usize - self.base as usize
    }

    /// Trims the bytes object to the output and hands it over.
    fn finish(mut self) -> PyResult<Bound<'py, PyBytes>> {
        let len = self.len();
        let mut out = std::mem::replace(&mut self.out, ptr::null_mut());
        // SAFETY: we hold the only reference (required by _PyBytes_Resize); on failure it
        // has released the object and set `out` to null.
        if unsafe { ffi::_PyBytes_Resize(&mut out, len as isize) } != 0 {
            return Err(PyErr::fetch(self.py));
        }
        // SAFETY: `out` is a new reference to a bytes object.
        Ok(unsafe { Bound::from_owned_ptr(self.py, out).cast_into_unchecked() })
    }

    /// Ensures `n` writable bytes at the cursor.
    #[inline(always)]
    fn room(&mut self, n: usize) {
        if (self.end as usize - self.cur as usize) < n {
            self.grow(n);
        }
    }

    #[cold]
    #[inline(never)]
    fn grow(&mut self, n: usize) {
        let len = self.len();
        let capacity = (self.end as usize - self.base as usize) * 2;
        let capacity = capacity.max(len + n);
        // SAFETY: we hold the only reference to `out`; the resized buffer keeps the first
        // `len` bytes, and the cursor is rebuilt from its new address.
        unsafe {
            if ffi::_PyBytes_Resize(&mut self.out, capacity as isize) != 0 {
                // Like Vec, treat running out of memory as fatal for this call.
                panic!("out of memory growing JSON output to {capacity} bytes");
            }
            self.base = ffi::PyBytes_AsString(self.out) as *mut u8;
            self.cur = self.base.add(len);
            self.end = self.base.add(capacity);
        }
    }

    /// Appends bytes; the caller has made room.
    #[inline(always)]
    unsafe fn put(&mut self, bytes: &[u8]) {
        debug_assert!(self.end as usize - self.cur as usize >= bytes.len());
        ptr::copy_nonoverlapping(bytes.as_ptr(), self.cur, bytes.len());
        self.cur = self.cur.add(bytes.len());
    }

    #[inline(always)]
    unsafe fn put_byte(&mut self, b: u8) {
        debug_assert!(self.end > self.cur);
        *self.cur = b;
        self.cur = self.cur.add(1);
    }

    #[cold]
    fn fail(&mut self, err: PyErr) -> Step {
        self.err = Some(err);
        Err(Failed)
    }

    #[cold]
    fn fail_fetch(&mut self) -> Step {
        let err = PyErr::fetch(self.py);
        self.fail(err)
    }

    /// SAFETY: `obj` must be a valid (at least borrowed) reference; GIL held.
    unsafe fn value(&mut self, obj: *mut ffi::PyObject) -> Step {
        self.room(SCALAR_ROOM);
        let ty = ffi::Py_TYPE(obj);
        // Exact types first, in order of frequency in Kubernetes objects.
        if ty == &raw mut ffi::PyUnicode_Type {
            self.string(obj);
            Ok(())
        } else if ty == &raw mut ffi::PyDict_Type {
            self.dict(obj)
        } else if ty == &raw mut ffi::PyList_Type {
            self.list(obj)
        } else if ty == &raw mut ffi::PyLong_Type {
            self.int(obj)
        } else if ty == &raw mut ffi::PyBool_Type {
            self.put(if obj == ffi::Py_True() {
                b"true"
            } else {
                b"false"
            });
            Ok(())
        } else if obj == ffi::Py_None() {
            self.put(b"null");
            Ok(())
        } else if ty == &raw mut ffi::PyFloat_Type {
            self.float(obj)
        } else if ty == &raw mut ffi::PyTuple_Type {
            self.tuple(obj)
        } else {
            self.subclass(obj)
        }
    }

    /// A container member: strings, the most common leaves, are written here without the
    /// full (recursive, register-saving) call to `value`.
    #[inline(always)]
    unsafe fn item(&mut self, obj: *mut ffi::PyObject) -> Step {
        if ffi::Py_TYPE(obj) == &raw mut ffi::PyUnicode_Type {
            self.string(obj);
            Ok(())
        } else {
            self.value(obj)
        }
    }

    #[cold]
    unsafe fn subclass(&mut self, obj: *mut ffi::PyObject) -> Step {
        if ffi::PyUnicode_Check(obj) != 0 {
            self.string(obj);
            Ok(())
        } else if ffi::PyDict_Check(obj) != 0 {
            self.mapping(obj)
        } else if ffi::PyLong_Check(obj) != 0 {
            self.int(obj)
        } else if ffi::PyFloat_Check(obj) != 0 {
            self.float(obj)
        } else if ffi::PyList_Check(obj) != 0 {
            self.list(obj)
        } else if ffi::PyTuple_Check(obj) != 0 {
            self.tuple(obj)
        } else {
            let name = type_name(self.py, obj);
            self.fail(PyTypeError::new_err(format!(
                "Object of type {name} is not JSON serializable"
            )))
        }
    }

    #[inline(always)]
    fn enter(&mut self) -> Step {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return self.too_deep();
        }
        Ok(())
    }

    #[cold]
    fn too_deep(&mut self) -> Step {
        self.fail(PyValueError::new_err(format!(
            "nesting deeper than {MAX_DEPTH} levels (or a reference cycle)"
        )))
    }

    unsafe fn dict(&mut self, obj: *mut ffi::PyObject) -> Step {
        self.enter()?;
        self.put_byte(b'{');
        let mut first = true;
        if let Some(entries) = combined_entries(obj) {
            for (key, val) in entries {
                self.entry(key, val, first)?;
                first = false;
            }
        } else {
            let mut pos: ffi::Py_ssize_t = 0;
            let mut key: *mut ffi::PyObject = ptr::null_mut();
            let mut val: *mut ffi::PyObject = ptr::null_mut();
            // Borrowed references in insertion order; nothing we call while iterating runs
            // Python code, so the dict cannot change under us.
            while ffi::PyDict_Next(obj, &mut pos, &mut key, &mut val) != 0 {
                self.entry(key, val, first)?;
                first = false;
            }
        }
        self.room(SCALAR_ROOM);
        self.put_byte(b'}');
        self.depth -= 1;
        Ok(())
    }

    #[inline(always)]
    unsafe fn entry(
        &mut self,
        key: *mut ffi::PyObject,
        val: *mut ffi::PyObject,
        first: bool,
    ) -> Step {
        if ffi::Py_TYPE(key) != &raw mut ffi::PyUnicode_Type && ffi::PyUnicode_Check(key) == 0 {
            let name = type_name(self.py, key);
            return self.fail(PyTypeError::new_err(format!(
                "dict keys must be str, not {name}"
            )));
        }
        if !first {
            self.room(SCALAR_ROOM);
            self.put_byte(b',');
        }
        self.string(key);
        // write_ascii leaves SCALAR_ROOM spare; the slow string paths reserve it too.
        self.put_byte(b':');
        self.item(val)
    }

    /// Dict subclasses (OrderedDict, defaultdict, ...) go through `items()` so that their own
    /// ordering is honoured.
    #[cold]
    unsafe fn mapping(&mut self, obj: *mut ffi::PyObject) -> Step {
        let items = ffi::PyMapping_Items(obj);
        if items.is_null() {
            return self.fail_fetch();
        }
        // Owning the list keeps every pair alive while we encode it.
        let items = Bound::from_owned_ptr(self.py, items);
        self.enter()?;
        self.put_byte(b'{');
        let n = ffi::PyList_GET_SIZE(items.as_ptr());
        for i in 0..n {
            let pair = ffi::PyList_GET_ITEM(items.as_ptr(), i);
            self.entry(
                ffi::PyTuple_GET_ITEM(pair, 0),
                ffi::PyTuple_GET_ITEM(pair, 1),
                i == 0,
            )?;
        }
        self.room(SCALAR_ROOM);
        self.put_byte(b'}');
        self.depth -= 1;
        Ok(())
    }

    unsafe fn list(&mut self, obj: *mut ffi::PyObject) -> Step {
        self.sequence(obj, ffi::PyList_GET_SIZE(obj), |o, i| {
            ffi::PyList_GET_ITEM(o, i)
        })
    }

    unsafe fn tuple(&mut self, obj: *mut ffi::PyObject) -> Step {
        self.sequence(obj, ffi::PyTuple_GET_SIZE(obj), |o, i| {
            ffi::PyTuple_GET_ITEM(o, i)
        })
    }

    #[inline(always)]
    unsafe fn sequence(
        &mut self,
        obj: *mut ffi::PyObject,
        n: ffi::Py_ssize_t,
        item: impl Fn(*mut ffi::PyObject, ffi::Py_ssize_t) -> *mut ffi::PyObject,
    ) -> Step {
        self.enter()?;
        self.put_byte(b'[');
        for i in 0..n {
            if i > 0 {
                self.room(SCALAR_ROOM);
                self.put_byte(b',');
            }
            self.item(item(obj, i))?;
        }
        self.room(SCALAR_ROOM);
        self.put_byte(b']');
        self.depth -= 1;
        Ok(())
    }

    unsafe fn int(&mut self, obj: *mut ffi::PyObject) -> Step {
        let mut overflow = 0;
        let v = ffi::PyLong_AsLongLongAndOverflow(obj, &mut overflow);
        if overflow == 0 {
            if v == -1 && !ffi::PyErr_Occurred().is_null() {
                return self.fail_fetch();
            }
            self.put(itoa::Buffer::new().format(v).as_bytes());
            return Ok(());
        }
        self.big_int(obj)
    }

    /// Ints beyond 64 bits: int's own decimal conversion (also right for int subclasses
    /// such as IntEnum, whose str() may differ).
    #[cold]
    unsafe fn big_int(&mut self, obj: *mut ffi::PyObject) -> Step {
        let int_type = &raw const ffi::PyLong_Type;
        let repr = (*int_type).tp_repr.expect("int has a repr");
        let text = repr(obj);
        if text.is_null() {
            return self.fail_fetch();
        }
        let text = Bound::from_owned_ptr(self.py, text);
        let mut len: ffi::Py_ssize_t = 0;
        let data = ffi::PyUnicode_AsUTF8AndSize(text.as_ptr(), &mut len);
        if data.is_null() {
            return self.fail_fetch();
        }
        self.room(len as usize + SCALAR_ROOM);
        self.put(std::slice::from_raw_parts(data as *const u8, len as usize));
        Ok(())
    }

    unsafe fn float(&mut self, obj: *mut ffi::PyObject) -> Step {
        let v = ffi::PyFloat_AS_DOUBLE(obj);
        if !v.is_finite() {
            return self.fail(PyValueError::new_err(format!(
                "Out of range float values are not JSON compliant: {}",
                if v.is_nan() {
                    "nan"
                } else if v > 0.0 {
                    "inf"
                } else {
                    "-inf"
                }
            )));
        }
        // ryu gives the shortest text that reads back to the same double, always with a
        // '.' or an exponent, so the value stays a float on reload.
        self.put(ryu::Buffer::new().format_finite(v).as_bytes());
        Ok(())
    }

    /// Writes a str (exact or subclass) as a JSON string. Reads CPython's compact storage
    /// directly, so no UTF-8 copy is cached on the object. Leaves SCALAR_ROOM spare.
    #[inline(always)]
    unsafe fn string(&mut self, obj: *mut ffi::PyObject) {
        if ffi::PyUnicode_IS_COMPACT_ASCII(obj) != 0 {
            let len = ffi::PyUnicode_GET_LENGTH(obj) as usize;
            let data = (obj as *const ffi::PyASCIIObject).add(1) as *const u8;
            self.ascii(std::slice::from_raw_parts(data, len));
        } else {
            self.wide_string(obj);
        }
    }

    /// String body (ASCII or UTF-8), quoted and escaped. Scans and copies eight bytes at a time: each
    /// word is stored before it is checked (there is room for it), so plain runs cost one
    /// load and one store per eight bytes and no memcpy call.
    #[inline(always)]
    unsafe fn ascii(&mut self, s: &[u8]) {
        self.room(s.len() + 16 + SCALAR_ROOM);
        let n = s.len();
        let src = s.as_ptr();
        let mut i = 0;
        // A local cursor: stores through a `*mut u8` may alias `self`, so working on
        // `self.cur` directly would reload it after every byte written.
        let mut cur = self.cur;
        *cur = b'"';
        cur = cur.add(1);
        while i + 16 <= n {
            let chunk: &[u8; 16] = s[i..i + 16].try_into().expect("16 bytes");
            ptr::copy_nonoverlapping(chunk.as_ptr(), cur, 16);
            let mask = swar::simd::specials(chunk, false);
            if mask == 0 {
                cur = cur.add(16);
                i += 16;
                continue;
            }
            let k = mask.trailing_zeros() as usize;
            self.cur = cur.add(k);
            i += k;
            self.escape(s[i]);
            i += 1;
            self.room(n - i + 16 + SCALAR_ROOM);
            cur = self.cur;
        }
        while i + 8 <= n {
            let word = ptr::read_unaligned(src.add(i) as *const u64);
            ptr::write_unaligned(cur as *mut u64, word);
            let mask = swar::escape_mask(word);
            if mask == 0 {
                cur = cur.add(8);
                i += 8;
                continue;
            }
            let k = (mask.trailing_zeros() / 8) as usize;
            self.cur = cur.add(k);
            i += k;
            self.escape(s[i]);
            i += 1;
            self.room(n - i + 16 + SCALAR_ROOM);
            cur = self.cur;
        }
        // The last 0..7 bytes: gathered into one word (padded with spaces, which need no
        // escape) and handled like the others unless they hold an escape.
        let rem = n - i;
        if rem > 0 {
            let word = swar::tail_word(&s[i..]);
            let mask = swar::escape_mask(word) & (u64::MAX >> (64 - 8 * rem));
            if mask == 0 {
                ptr::write_unaligned(cur as *mut u64, word);
                cur = cur.add(rem);
            } else {
                self.cur = cur;
                for &c in &s[i..] {
                    if ESCAPE[c as usize] != 0 {
                        self.escape(c);
                        self.room(16 + SCALAR_ROOM);
                    } else {
                        self.put_byte(c);
                    }
                }
                cur = self.cur;
            }
        }
        *cur = b'"';
        self.cur = cur.add(1);
    }

    #[cold]
    unsafe fn escape(&mut self, c: u8) {
        self.room(6);
        match ESCAPE[c as usize] {
            b'u' => self.put(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[(c >> 4) as usize],
                HEX[(c & 15) as usize],
            ]),
            e => self.put(&[b'\\', e]),
        }
    }

    /// Non-ASCII strings: their UTF-8 form (which CPython computes once and caches on the
    /// object, like orjson relies on) is escaped like ASCII, since only ASCII bytes ever
    /// need escaping. Strings holding lone surrogates have no UTF-8 form and are transcoded.
    #[inline(never)]
    unsafe fn wide_string(&mut self, obj: *mut ffi::PyObject) {
        let mut size: ffi::Py_ssize_t = 0;
        let utf8 = ffi::PyUnicode_AsUTF8AndSize(obj, &mut size);
        if !utf8.is_null() {
            self.ascii(std::slice::from_raw_parts(utf8 as *const u8, size as usize));
            return;
        }
        ffi::PyErr_Clear();
        let len = ffi::PyUnicode_GET_LENGTH(obj) as usize;
        let data = ffi::PyUnicode_DATA(obj);
        // At most 6 output bytes per code unit (a \uXXXX escape).
        self.room(len * 6 + 2 + SCALAR_ROOM);
        match ffi::PyUnicode_KIND(obj) {
            ffi::PyUnicode_1BYTE_KIND => {
                let s = std::slice::from_raw_parts(data as *const u8, len);
                self.units(s.iter().map(|&c| c as u32));
            }
            ffi::PyUnicode_2BYTE_KIND => {
                let s = std::slice::from_raw_parts(data as *const u16, len);
                self.units(s.iter().map(|&c| c as u32));
            }
            _ => {
                let s = std::slice::from_raw_parts(data as *const u32, len);
                self.units(s.iter().copied());
            }
        }
    }

    /// Code points (from any PEP 393 storage) to UTF-8; room for the worst case has been
    /// made. Lone surrogates, which Python strings may hold but UTF-8 cannot, are written as
    /// `\udXXX` escapes so that they survive a round trip.
    unsafe fn units(&mut self, units: impl Iterator<Item = u32>) {
        self.put_byte(b'"');
        for c in units {
            if c < 0x80 {
                match ESCAPE[c as usize] {
                    0 => self.put_byte(c as u8),
                    b'u' => self.put(&[
                        b'\\',
                        b'u',
                        b'0',
                        b'0',
                        HEX[(c >> 4) as usize],
                        HEX[(c & 15) as usize],
                    ]),
                    e => self.put(&[b'\\', e]),
                }
            } else if (0xD800..0xE000).contains(&c) {
                self.put(&[
                    b'\\',
                    b'u',
                    HEX[(c >> 12) as usize & 15],
                    HEX[(c >> 8) as usize & 15],
                    HEX[(c >> 4) as usize & 15],
                    HEX[c as usize & 15],
                ]);
            } else {
                // Every other value PEP 393 can store is a Unicode scalar value.
                let ch = char::from_u32(c).unwrap_or('\u{fffd}');
                let mut tmp = [0u8; 4];
                self.put(ch.encode_utf8(&mut tmp).as_bytes());
            }
        }
        self.put_byte(b'"');
    }
}

#[cold]
fn type_name(py: Python<'_>, obj: *mut ffi::PyObject) -> String {
    // SAFETY: `obj` is a live borrowed reference (GIL held by the caller).
    let bound = unsafe { Bound::from_borrowed_ptr(py, obj) };
    bound
        .get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".to_string())
}

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
unsafe fn combined_entries(
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

/// Escape table: 0 = copy as is, otherwise the letter after the backslash ('u' = \u00XX).
static ESCAPE: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = b'u';
        i += 1;
    }
    t[0x08] = b'b';
    t[0x09] = b't';
    t[0x0a] = b'n';
    t[0x0c] = b'f';
    t[0x0d] = b'r';
    t[b'"' as usize] = b'"';
    t[b'\\' as usize] = b'\\';
    t
};

const HEX: &[u8; 16] = b"0123456789abcdef";

// ------------------------------------------------------------------------------ decoding

/// Scratch buffers larger than this are not kept between calls, so one huge document does
/// not pin memory.
const KEEP_BUFFER: usize = 1 << 20;

/// Parse JSON exactly: ints of any size stay ints, floats stay floats.
#[pyfunction]
pub fn loads(py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
    let ptr = data.as_ptr();
    // SAFETY: the pointers come from `data`, which stays alive and unchanged for the whole
    // decode: decoding runs no Python code that could resize a bytearray.
    unsafe {
        if ffi::PyBytes_Check(ptr) != 0 {
            let buf = ffi::PyBytes_AS_STRING(ptr) as *const u8;
            let len = ffi::Py_SIZE(ptr) as usize;
            decode(py, std::slice::from_raw_parts(buf, len))
        } else if ffi::PyUnicode_Check(ptr) != 0 {
            let mut len: ffi::Py_ssize_t = 0;
            let buf = ffi::PyUnicode_AsUTF8AndSize(ptr, &mut len);
            if buf.is_null() {
                let err = PyErr::fetch(py);
                return Err(DecodeError::new_err(format!(
                    "str is not valid UTF-8: {err}"
                )));
            }
            decode(
                py,
                std::slice::from_raw_parts(buf as *const u8, len as usize),
            )
        } else if ffi::PyByteArray_Check(ptr) != 0 {
            let buf = ffi::PyByteArray_AsString(ptr) as *const u8;
            let len = ffi::PyByteArray_Size(ptr) as usize;
            decode(py, std::slice::from_raw_parts(buf, len))
        } else if ffi::PyMemoryView_Check(ptr) != 0 {
            let view = pyo3::buffer::PyBuffer::<u8>::get(data)?;
            if !view.is_c_contiguous() {
                return Err(PyTypeError::new_err("memoryview must be C-contiguous"));
            }
            let bytes = std::slice::from_raw_parts(view.buf_ptr() as *const u8, view.len_bytes());
            decode(py, bytes)
        } else {
            let name = data.get_type().name()?;
            Err(PyTypeError::new_err(format!(
                "loads() wants bytes, bytearray, memoryview or str, not {name}"
            )))
        }
    }
}

/// Scratch state kept between calls so that a decode allocates only the Python objects.
struct DecodeState {
    keys: KeyCache,
    values: KeyCache,
    stack: Vec<*mut ffi::PyObject>,
    scratch: Vec<u8>,
}

// SAFETY: the raw pointers are Python objects that are only touched while the GIL is held
// (the state is only used inside `decode`, which requires a `Python` token).
unsafe impl Send for DecodeState {}

static STATE: Mutex<Option<DecodeState>> = Mutex::new(None);

fn decode(py: Python<'_>, data: &[u8]) -> PyResult<Py<PyAny>> {
    // A finaliser run by the GC during a decode could call loads() again on this thread;
    // try_lock keeps that from deadlocking (it gets a private state instead).
    let mut guard = STATE.try_lock().ok();
    let mut private = None;
    let state = match guard.as_mut() {
        Some(g) => g.get_or_insert_with(DecodeState::new),
        None => private.insert(DecodeState::new()),
    };
    let mut dec = Decoder {
        data,
        pos: 0,
        depth: 0,
        stack: &mut state.stack,
        scratch: &mut state.scratch,
        keys: &mut state.keys,
        values: &mut state.values,
    };
    // SAFETY: GIL held (we have `py`); the decoder owns every object it creates until it
    // hands it to a container or returns it.
    let result = unsafe { dec.document() };
    if state.scratch.capacity() > KEEP_BUFFER {
        state.scratch = Vec::new();
    }
    if state.stack.capacity() > KEEP_BUFFER / 8 {
        state.stack = Vec::new();
    }
    match result {
        // SAFETY: `obj` is a new reference we own.
        Ok(obj) => Ok(unsafe { Py::from_owned_ptr(py, obj) }),
        Err(e) => Err((*e).into_pyerr(py)),
    }
}

impl DecodeState {
    fn new() -> Self {
        DecodeState {
            keys: KeyCache::new(KEY_SLOTS),
            values: KeyCache::new(VALUE_SLOTS),
            stack: Vec::with_capacity(256),
            scratch: Vec::with_capacity(256),
        }
    }
}

/// Dict keys repeat endlessly across objects ("metadata", "name", ...), and so do many short
/// values ("True", "TCP", "IfNotPresent"): direct-mapped caches of short ASCII strings return
/// the same (immutable) str object instead of allocating a new one.
struct KeyCache {
    slots: Vec<(u64, *mut ffi::PyObject)>,
}

const KEY_SLOTS: usize = 2048;
const KEY_MAX_LEN: usize = 64;
const VALUE_SLOTS: usize = 1024;
const VALUE_MAX_LEN: usize = 24;

impl KeyCache {
    fn new(slots: usize) -> Self {
        debug_assert!(slots.is_power_of_two());
        KeyCache {
            slots: vec![(0, ptr::null_mut()); slots],
        }
    }

    /// The cached str for the ASCII bytes `s`, or a new one (then cached); null on
    /// MemoryError. Returns a new reference.
    ///
    /// SAFETY: GIL held; `s` is ASCII.
    #[inline(always)]
    unsafe fn get(&mut self, s: &[u8]) -> *mut ffi::PyObject {
        let h = key_hash(s);
        let mask = self.slots.len() - 1;
        let slot = &mut self.slots[h as usize & mask];
        if slot.0 == h && !slot.1.is_null() {
            let obj = slot.1;
            // Cached strings are compact ASCII strs that we made: their characters follow
            // the PyASCIIObject header.
            let len = ffi::PyUnicode_GET_LENGTH(obj) as usize;
            let data = (obj as *const ffi::PyASCIIObject).add(1) as *const u8;
            if short_eq(std::slice::from_raw_parts(data, len), s) {
                ffi::Py_INCREF(obj);
                return obj;
            }
        }
        let obj = new_ascii(s);
        if !obj.is_null() {
            if !slot.1.is_null() {
                ffi::Py_DECREF(slot.1);
            }
            ffi::Py_INCREF(obj);
            *slot = (h, obj);
        }
        obj
    }
}

fn key_hash(s: &[u8]) -> u64 {
    const K: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut h = s.len() as u64;
    let mut chunks = s.chunks_exact(8);
    for c in &mut chunks {
        let w = u64::from_le_bytes(c.try_into().expect("8 bytes"));
        h = (h.rotate_left(5) ^ w).wrapping_mul(K);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        h = (h.rotate_left(5) ^ swar::tail_word(rest)).wrapping_mul(K);
    }
    h ^ (h >> 29)
}

/// Byte equality for short keys without a call to memcmp.
#[inline(always)]
fn short_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut ca = a.chunks_exact(8);
    let mut cb = b.chunks_exact(8);
    for (x, y) in (&mut ca).zip(&mut cb) {
        if x != y {
            return false;
        }
    }
    let (ra, rb) = (ca.remainder(), cb.remainder());
    ra.is_empty() || swar::tail_word(ra) == swar::tail_word(rb)
}

/// A decode failure: a syntax error at a byte offset, or a Python error (memory, int size).
enum DecodeFail {
    Syntax(String),
    Python(PyErr),
}

type Fail = Box<DecodeFail>;

impl DecodeFail {
    fn into_pyerr(self, py: Python<'_>) -> PyErr {
        match self {
            DecodeFail::Syntax(msg) => DecodeError::new_err(msg),
            DecodeFail::Python(err) => {
                if err.is_instance_of::<PyValueError>(py) {
                    DecodeError::new_err(err.value(py).to_string())
                } else {
                    err
                }
            }
        }
    }
}

struct Decoder<'a> {
    data: &'a [u8],
    pos: usize,
    depth: u32,
    stack: &'a mut Vec<*mut ffi::PyObject>,
    scratch: &'a mut Vec<u8>,
    keys: &'a mut KeyCache,
    values: &'a mut KeyCache,
}

#[inline]
fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

// The `unsafe fn`s below create Python objects: the GIL is held (decode() has the token)
// and every pointer they return is a new reference that the caller takes over.
impl Decoder<'_> {
    #[cold]
    fn syntax(&self, at: usize, context: &str) -> Fail {
        let msg = if at >= self.data.len() {
            format!("unexpected end of JSON input at byte {}", self.data.len())
        } else {
            format!(
                "invalid character {} {context} at byte {at}",
                quote_char(self.data, at)
            )
        };
        Box::new(DecodeFail::Syntax(msg))
    }

    #[cold]
    fn python_error(&self) -> Fail {
        // SAFETY: GIL held by the caller of decode().
        let py = unsafe { Python::assume_attached() };
        let err = PyErr::fetch(py);
        Box::new(DecodeFail::Python(err))
    }

    #[inline]
    fn skip_ws(&mut self) {
        while self.pos < self.data.len() && is_ws(self.data[self.pos]) {
            self.pos += 1;
        }
    }

    #[inline]
    fn peek(&self) -> Option<u8> {
        self.data.get(self.pos).copied()
    }

    unsafe fn document(&mut self) -> Result<*mut ffi::PyObject, Fail> {
        let obj = self.value()?;
        self.skip_ws();
        if self.pos < self.data.len() {
            ffi::Py_DECREF(obj);
            return Err(self.syntax(self.pos, "after top-level value"));
        }
        Ok(obj)
    }

    unsafe fn value(&mut self) -> Result<*mut ffi::PyObject, Fail> {
        self.skip_ws();
        match self.peek() {
            Some(b'"') => self.string(),
            Some(b'{') => self.object(),
            Some(b'[') => self.array(),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(b't') => self.literal(b"true", ffi::Py_True()),
            Some(b'f') => self.literal(b"false", ffi::Py_False()),
            Some(b'n') => self.literal(b"null", ffi::Py_None()),
            _ => Err(self.syntax(self.pos, "looking for beginning of value")),
        }
    }

    unsafe fn literal(
        &mut self,
        word: &'static [u8],
        obj: *mut ffi::PyObject,
    ) -> Result<*mut ffi::PyObject, Fail> {
        for (i, &expected) in word.iter().enumerate().skip(1) {
            let at = self.pos + i;
            if self.data.get(at) != Some(&expected) {
                let name = std::str::from_utf8(word).unwrap_or_default();
                let context = format!("in literal {name} (expecting '{}')", expected as char);
                return Err(self.syntax(at, &context));
            }
        }
        self.pos += word.len();
        ffi::Py_INCREF(obj);
        Ok(obj)
    }

    fn enter(&mut self) -> Result<(), Fail> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(Box::new(DecodeFail::Syntax(format!(
                "exceeded max depth of {MAX_DEPTH} at byte {}",
                self.pos
            ))));
        }
        Ok(())
    }

    /// Drops the objects this container pushed before failing.
    #[cold]
    unsafe fn unwind(&mut self, base: usize, err: Fail) -> Fail {
        for &obj in &self.stack[base..] {
            ffi::Py_DECREF(obj);
        }
        self.stack.truncate(base);
        err
    }

    unsafe fn array(&mut self) -> Result<*mut ffi::PyObject, Fail> {
        self.enter()?;
        self.pos += 1;
        let base = self.stack.len();
        self.skip_ws();
        if self.peek() == Some(b']') {
            self.pos += 1;
        } else {
            loop {
                match self.value() {
                    Ok(v) => self.stack.push(v),
                    Err(e) => return Err(self.unwind(base, e)),
                }
                self.skip_ws();
                match self.peek() {
                    Some(b',') => self.pos += 1,
                    Some(b']') => {
                        self.pos += 1;
                        break;
                    }
                    _ => {
                        let e = self.syntax(self.pos, "after array element");
                        return Err(self.unwind(base, e));
                    }
                }
            }
        }
        self.depth -= 1;
        let n = self.stack.len() - base;
        let list = ffi::PyList_New(n as ffi::Py_ssize_t);
        if list.is_null() {
            let e = self.python_error();
            return Err(self.unwind(base, e));
        }
        for (i, &item) in self.stack[base..].iter().enumerate() {
            // Steals the reference we own.
            ffi::PyList_SET_ITEM(list, i as ffi::Py_ssize_t, item);
        }
        self.stack.truncate(base);
        Ok(list)
    }

    unsafe fn object(&mut self) -> Result<*mut ffi::PyObject, Fail> {
        self.enter()?;
        self.pos += 1;
        let base = self.stack.len();
        self.skip_ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
        } else {
            loop {
                if self.peek() != Some(b'"') {
                    let e = self.syntax(self.pos, "looking for beginning of object key string");
                    return Err(self.unwind(base, e));
                }
                match self.key() {
                    Ok(k) => self.stack.push(k),
                    Err(e) => return Err(self.unwind(base, e)),
                }
                self.skip_ws();
                if self.peek() != Some(b':') {
                    let e = self.syntax(self.pos, "after object key");
                    return Err(self.unwind(base, e));
                }
                self.pos += 1;
                match self.value() {
                    Ok(v) => self.stack.push(v),
                    Err(e) => return Err(self.unwind(base, e)),
                }
                self.skip_ws();
                match self.peek() {
                    Some(b',') => {
                        self.pos += 1;
                        self.skip_ws();
                    }
                    Some(b'}') => {
                        self.pos += 1;
                        break;
                    }
                    _ => {
                        let e = self.syntax(self.pos, "after object key:value pair");
                        return Err(self.unwind(base, e));
                    }
                }
            }
        }
        self.depth -= 1;
        let pairs = (self.stack.len() - base) / 2;
        // Presized so that building a dict never rehashes.
        let dict = ffi::_PyDict_NewPresized(pairs as ffi::Py_ssize_t);
        if dict.is_null() {
            let e = self.python_error();
            return Err(self.unwind(base, e));
        }
        let mut failed = false;
        for pair in self.stack[base..].chunks_exact(2) {
            if !failed && ffi::PyDict_SetItem(dict, pair[0], pair[1]) != 0 {
                failed = true;
            }
            ffi::Py_DECREF(pair[0]);
            ffi::Py_DECREF(pair[1]);
        }
        self.stack.truncate(base);
        if failed {
            ffi::Py_DECREF(dict);
            return Err(self.python_error());
        }
        Ok(dict)
    }

    /// An object key: short plain ASCII keys come from the cache.
    unsafe fn key(&mut self) -> Result<*mut ffi::PyObject, Fail> {
        let start = self.pos + 1;
        let end = swar::find_string_special(self.data, start);
        if end < self.data.len() && self.data[end] == b'"' && end - start <= KEY_MAX_LEN {
            self.pos = end + 1;
            return self.cached_key(&self.data[start..end]);
        }
        self.string()
    }

    unsafe fn cached_key(&mut self, s: &[u8]) -> Result<*mut ffi::PyObject, Fail> {
        let obj = self.keys.get(s);
        self.ok_or_python(obj)
    }

    unsafe fn string(&mut self) -> Result<*mut ffi::PyObject, Fail> {
        let d = self.data;
        let start = self.pos + 1;
        let mut i = swar::find_string_special(d, start);
        if i < d.len() && d[i] == b'"' {
            self.pos = i + 1;
            let text = &d[start..i];
            let obj = if text.len() <= VALUE_MAX_LEN {
                self.values.get(text)
            } else {
                new_ascii(text)
            };
            return self.ok_or_python(obj);
        }
        // Non-ASCII: find the end (non-ASCII bytes no longer stop the scan).
        if i < d.len() && d[i] >= 0x80 {
            i = swar::find_quote_or_escape(d, i + 1);
        }
        if i >= d.len() {
            return Err(self.syntax(i, ""));
        }
        match d[i] {
            b'"' => {
                let raw = &d[start..i];
                self.pos = i + 1;
                // CPython's strict decoder validates as it goes; only on failure do we
                // look for the offset to report.
                let obj = ffi::PyUnicode_DecodeUTF8(
                    raw.as_ptr() as *const c_char,
                    raw.len() as ffi::Py_ssize_t,
                    ptr::null(),
                );
                if obj.is_null() {
                    return Err(self.invalid_utf8(start, raw));
                }
                Ok(obj)
            }
            b'\\' => self.escaped_string(start, i),
            _ => Err(self.syntax(i, "in string literal")),
        }
    }

    /// The error for a string body that CPython's strict UTF-8 decoder refused.
    #[cold]
    unsafe fn invalid_utf8(&self, start: usize, raw: &[u8]) -> Fail {
        ffi::PyErr_Clear();
        let bad = validate_utf8_raw(raw).err().unwrap_or(0);
        self.bad_utf8(start + bad)
    }

    #[cold]
    fn bad_utf8(&self, at: usize) -> Fail {
        Box::new(DecodeFail::Syntax(format!(
            "invalid UTF-8 in string at byte {at}"
        )))
    }

    #[inline]
    fn ok_or_python(&self, obj: *mut ffi::PyObject) -> Result<*mut ffi::PyObject, Fail> {
        if obj.is_null() {
            Err(self.python_error())
        } else {
            Ok(obj)
        }
    }

    /// A string with backslash escapes, unescaped into the scratch buffer. Lone surrogates
    /// (`"\ud800"`, valid JSON and valid in a Python str) are written in the generalised UTF-8
    /// form that CPython's "surrogatepass" handler reads back.
    unsafe fn escaped_string(
        &mut self,
        start: usize,
        first_escape: usize,
    ) -> Result<*mut ffi::PyObject, Fail> {
        let d = self.data;
        let mut lone_surrogate = false;
        self.scratch.clear();
        self.scratch.extend_from_slice(&d[start..first_escape]);
        let mut i = first_escape;
        loop {
            // Invariant: d[i] is '"', '\\' or a control character, or i == len.
            match d.get(i) {
                None => return Err(self.syntax(i, "")),
                Some(b'"') => break,
                Some(b'\\') => match d.get(i + 1).map(|&c| SIMPLE_ESCAPES[c as usize]) {
                    Some(b) if b != 0 => {
                        self.scratch.push(b);
                        i += 2;
                    }
                    _ => {
                        let (cp, next) = self.escape(i)?;
                        i = next;
                        lone_surrogate |= (0xD800..0xE000).contains(&cp);
                        push_wtf8(self.scratch, cp);
                    }
                },
                Some(_) => return Err(self.syntax(i, "in string literal")),
            }
            // Raw runs, non-ASCII included, are copied as they are and checked at the end.
            i = copy_run(self.scratch, d, i);
        }
        let raw = &d[start..i];
        self.pos = i + 1;
        let buf = &self.scratch[..];
        if buf.is_ascii() {
            return self.ok_or_python(new_ascii(buf));
        }
        let errors: *const c_char = if lone_surrogate {
            // "surrogatepass" would also let encoded surrogates in the raw input through,
            // so the raw bytes are checked first.
            if let Err(bad) = validate_utf8_raw(raw) {
                return Err(self.bad_utf8(start + bad));
            }
            c"surrogatepass".as_ptr()
        } else {
            ptr::null()
        };
        let obj = ffi::PyUnicode_DecodeUTF8(
            buf.as_ptr() as *const c_char,
            buf.len() as ffi::Py_ssize_t,
            errors,
        );
        if obj.is_null() {
            return Err(self.invalid_utf8(start, raw));
        }
        Ok(obj)
    }

    /// Decodes the escape at `d[at] == '\\'`: returns the code point (a lone surrogate if
    /// unpaired) and the index after the escape.
    fn escape(&self, at: usize) -> Result<(u32, usize), Fail> {
        let d = self.data;
        let Some(&c) = d.get(at + 1) else {
            return Err(self.syntax(at + 1, ""));
        };
        let simple = match c {
            b'"' => b'"',
            b'\\' => b'\\',
            b'/' => b'/',
            b'b' => 0x08,
            b'f' => 0x0c,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'u' => {
                let hi = self.hex4(at + 2)?;
                if (0xD800..0xDC00).contains(&hi)
                    && d.get(at + 6) == Some(&b'\\')
                    && d.get(at + 7) == Some(&b'u')
                {
                    if let Ok(lo) = self.hex4(at + 8) {
                        if (0xDC00..0xE000).contains(&lo) {
                            let cp = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
                            return Ok((cp, at + 12));
                        }
                    }
                }
                return Ok((hi, at + 6));
            }
            _ => return Err(self.syntax(at + 1, "in string escape code")),
        };
        Ok((simple as u32, at + 2))
    }

    fn hex4(&self, at: usize) -> Result<u32, Fail> {
        let mut v = 0u32;
        for i in at..at + 4 {
            let Some(&c) = self.data.get(i) else {
                return Err(self.syntax(i, ""));
            };
            let digit = match c {
                b'0'..=b'9' => c - b'0',
                b'a'..=b'f' => c - b'a' + 10,
                b'A'..=b'F' => c - b'A' + 10,
                _ => return Err(self.syntax(i, "in \\u hexadecimal character escape")),
            };
            v = v * 16 + digit as u32;
        }
        Ok(v)
    }

    unsafe fn number(&mut self) -> Result<*mut ffi::PyObject, Fail> {
        let d = self.data;
        let start = self.pos;
        let mut p = start;
        let neg = d[p] == b'-';
        if neg {
            p += 1;
        }
        match d.get(p) {
            Some(b'0') => p += 1,
            Some(b'1'..=b'9') => {
                while p < d.len() && d[p].is_ascii_digit() {
                    p += 1;
                }
            }
            _ => return Err(self.syntax(p, "in numeric literal")),
        }
        let int_end = p;
        let mut is_float = false;
        if d.get(p) == Some(&b'.') {
            p += 1;
            if !d.get(p).is_some_and(u8::is_ascii_digit) {
                return Err(self.syntax(p, "after decimal point in numeric literal"));
            }
            while p < d.len() && d[p].is_ascii_digit() {
                p += 1;
            }
            is_float = true;
        }
        if matches!(d.get(p), Some(b'e' | b'E')) {
            p += 1;
            if matches!(d.get(p), Some(b'+' | b'-')) {
                p += 1;
            }
            if !d.get(p).is_some_and(u8::is_ascii_digit) {
                return Err(self.syntax(p, "in exponent of numeric literal"));
            }
            while p < d.len() && d[p].is_ascii_digit() {
                p += 1;
            }
            is_float = true;
        }
        self.pos = p;
        if is_float {
            // The grammar above is a subset of what Rust's exact parser accepts.
            let text = std::str::from_utf8_unchecked(&d[start..p]);
            let v: f64 = text.parse().unwrap_or(f64::NAN);
            return self.ok_or_python(ffi::PyFloat_FromDouble(v));
        }
        let digits = &d[start + neg as usize..int_end];
        if digits.len() <= 18 {
            // 18 digits always fit an i64.
            let mut v: i64 = 0;
            for &c in digits {
                v = v * 10 + (c - b'0') as i64;
            }
            return self.ok_or_python(ffi::PyLong_FromLongLong(if neg { -v } else { v }));
        }
        self.big_number(&d[start..int_end], digits, neg)
    }

    #[cold]
    unsafe fn big_number(
        &self,
        text: &[u8],
        digits: &[u8],
        neg: bool,
    ) -> Result<*mut ffi::PyObject, Fail> {
        let mut v: u64 = 0;
        let mut fits = digits.len() <= 20;
        for &c in digits {
            match v
                .checked_mul(10)
                .and_then(|x| x.checked_add((c - b'0') as u64))
            {
                Some(x) => v = x,
                None => {
                    fits = false;
                    break;
                }
            }
        }
        if fits {
            if !neg {
                return self.ok_or_python(ffi::PyLong_FromUnsignedLongLong(v));
            }
            if v <= 1 << 63 {
                let n = (v as i128).wrapping_neg() as i64;
                return self.ok_or_python(ffi::PyLong_FromLongLong(n));
            }
        }
        let mut z = Vec::with_capacity(text.len() + 1);
        z.extend_from_slice(text);
        z.push(0);
        let obj = ffi::PyLong_FromString(z.as_ptr() as *const c_char, ptr::null_mut(), 10);
        if obj.is_null() {
            // Python's int-size limit (sys.set_int_max_str_digits) refused it.
            let py = Python::assume_attached();
            let err = PyErr::fetch(py);
            let detail = err.value(py).to_string();
            let start = self.pos - text.len();
            return Err(Box::new(DecodeFail::Syntax(format!(
                "integer out of range: {detail} at byte {start}"
            ))));
        }
        Ok(obj)
    }
}

/// A new compact ASCII str holding `s` (which must be ASCII); null on MemoryError.
unsafe fn new_ascii(s: &[u8]) -> *mut ffi::PyObject {
    let obj = ffi::PyUnicode_New(s.len() as ffi::Py_ssize_t, 127);
    if !obj.is_null() && !s.is_empty() {
        ptr::copy_nonoverlapping(s.as_ptr(), ffi::PyUnicode_DATA(obj) as *mut u8, s.len());
    }
    obj
}

/// Appends `d[i..]` up to the next `"`, `\\` or control byte to `out` and returns its index
/// (or `d.len()`). Copies sixteen bytes per step with no memcpy call, since strings full of
/// escapes (JSON inside an annotation) have many short runs.
fn copy_run(out: &mut Vec<u8>, d: &[u8], mut i: usize) -> usize {
    out.reserve(d.len() - i + 16);
    let mut len = out.len();
    let base = out.as_mut_ptr();
    while i + 16 <= d.len() {
        let chunk: &[u8; 16] = d[i..i + 16].try_into().expect("16 bytes");
        // SAFETY: `reserve` made room for every byte left in `d` plus 16, and at most that
        // many are written; only the bytes before the stop are counted into the length.
        unsafe { ptr::copy_nonoverlapping(chunk.as_ptr(), base.add(len), 16) };
        let mask = swar::simd::specials(chunk, false);
        if mask != 0 {
            let k = mask.trailing_zeros() as usize;
            // SAFETY: the first `k` of the bytes just written are part of the output.
            unsafe { out.set_len(len + k) };
            return i + k;
        }
        len += 16;
        i += 16;
    }
    // SAFETY: all `len` bytes have been written above.
    unsafe { out.set_len(len) };
    let next = swar::find_quote_or_escape(d, i).min(d.len());
    out.extend_from_slice(&d[i..next]);
    next
}

/// The byte that a one-letter escape (`\\n`, `\\"`, ...) stands for; 0 for `u` and invalid ones.
static SIMPLE_ESCAPES: [u8; 256] = {
    let mut t = [0u8; 256];
    t[b'"' as usize] = b'"';
    t[b'\\' as usize] = b'\\';
    t[b'/' as usize] = b'/';
    t[b'b' as usize] = 0x08;
    t[b'f' as usize] = 0x0c;
    t[b'n' as usize] = b'\n';
    t[b'r' as usize] = b'\r';
    t[b't' as usize] = b'\t';
    t
};

/// UTF-8 of `cp`, or for a surrogate its 3-byte generalised form.
fn push_wtf8(out: &mut Vec<u8>, cp: u32) {
    if cp < 0x80 {
        out.push(cp as u8);
    } else if cp < 0x800 {
        out.extend_from_slice(&[0xC0 | (cp >> 6) as u8, 0x80 | (cp & 0x3F) as u8]);
    } else if cp < 0x10000 {
        out.extend_from_slice(&[
            0xE0 | (cp >> 12) as u8,
            0x80 | ((cp >> 6) & 0x3F) as u8,
            0x80 | (cp & 0x3F) as u8,
        ]);
    } else {
        out.extend_from_slice(&[
            0xF0 | (cp >> 18) as u8,
            0x80 | ((cp >> 12) & 0x3F) as u8,
            0x80 | ((cp >> 6) & 0x3F) as u8,
            0x80 | (cp & 0x3F) as u8,
        ]);
    }
}

/// Checks that the raw (still escaped) string body is UTF-8; escapes are ASCII, so this is
/// exactly the check on the bytes we copied. Returns the offset of the first bad byte.
fn validate_utf8_raw(raw: &[u8]) -> Result<(), usize> {
    std::str::from_utf8(raw)
        .map(|_| ())
        .map_err(|e| e.valid_up_to())
}
