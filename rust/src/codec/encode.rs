//! `dumps`: compact UTF-8 JSON written straight from Python objects.

use std::cell::Cell;
use std::ptr;

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::jsonscan::swar;

use super::dictwalk::combined_entries;
use super::MAX_DEPTH;

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
                if ESCAPE[c as usize] == 0 {
                    self.put_byte(c as u8);
                } else {
                    self.escape(c as u8);
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
