//! `loads`: Python objects built straight from JSON bytes.

use std::ffi::c_char;
use std::ptr;
use std::sync::Mutex;

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::ffi;
use pyo3::prelude::*;

use crate::jsonscan::{quote_char, swar};

use super::strcache::{new_ascii, KeyCache, KEY_MAX_LEN, KEY_SLOTS, VALUE_MAX_LEN, VALUE_SLOTS};
use super::{DecodeError, MAX_DEPTH};

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

    /// A string with backslash escapes, unescaped into the scratch buffer. A lone surrogate
    /// escape (`"\ud800"`) reads as U+FFFD, as Go's decoder (and so upstream) reads it.
    unsafe fn escaped_string(
        &mut self,
        start: usize,
        first_escape: usize,
    ) -> Result<*mut ffi::PyObject, Fail> {
        let d = self.data;
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
                        push_utf8(self.scratch, cp);
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
        let obj = ffi::PyUnicode_DecodeUTF8(
            buf.as_ptr() as *const c_char,
            buf.len() as ffi::Py_ssize_t,
            ptr::null(),
        );
        if obj.is_null() {
            return Err(self.invalid_utf8(start, raw));
        }
        Ok(obj)
    }

    /// Decodes the escape at `d[at] == '\\'`: returns the code point (U+FFFD for a surrogate
    /// that is not half of a pair, the next escape then read on its own) and the index after
    /// the escape.
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
                if (0xD800..0xE000).contains(&hi) {
                    return Ok((REPLACEMENT, at + 6));
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

/// What a lone surrogate escape decodes to (Go's unicode.ReplacementChar).
const REPLACEMENT: u32 = 0xFFFD;

/// UTF-8 of `cp` (never a surrogate: escape() replaces those).
fn push_utf8(out: &mut Vec<u8>, cp: u32) {
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
