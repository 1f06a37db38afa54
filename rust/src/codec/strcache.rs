//! Short ASCII strings decoded as Python str objects, the frequent ones shared.

use std::ptr;

use pyo3::ffi;

use crate::jsonscan::swar;

/// Dict keys repeat endlessly across objects ("metadata", "name", ...), and so do many short
/// values ("True", "TCP", "IfNotPresent"): direct-mapped caches of short ASCII strings return
/// the same (immutable) str object instead of allocating a new one.
pub(super) struct KeyCache {
    slots: Vec<(u64, *mut ffi::PyObject)>,
}

pub(super) const KEY_SLOTS: usize = 2048;
pub(super) const KEY_MAX_LEN: usize = 64;
pub(super) const VALUE_SLOTS: usize = 1024;
pub(super) const VALUE_MAX_LEN: usize = 24;

impl KeyCache {
    pub(super) fn new(slots: usize) -> Self {
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
    pub(super) unsafe fn get(&mut self, s: &[u8]) -> *mut ffi::PyObject {
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

/// A new compact ASCII str holding `s` (which must be ASCII); null on MemoryError.
pub(super) unsafe fn new_ascii(s: &[u8]) -> *mut ffi::PyObject {
    let obj = ffi::PyUnicode_New(s.len() as ffi::Py_ssize_t, 127);
    if !obj.is_null() && !s.is_empty() {
        ptr::copy_nonoverlapping(s.as_ptr(), ffi::PyUnicode_DATA(obj) as *mut u8, s.len());
    }
    obj
}
