//! Interned strings and the integer-keyed maps the kernel looks them up in.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

use super::*;

/// A multiply-rotate hasher for the small integer keys looked up once per node per call;
/// SipHash's flood resistance buys nothing for ids the table hands out itself.
#[derive(Default)]
pub(super) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(b as u64);
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.write_u64(n as u64);
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

pub(super) type IdMap<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;
pub(super) type IdSet<K> = HashSet<K, BuildHasherDefault<IdHasher>>;

/// Strings as small ids, so per-node comparisons are integer compares.
#[derive(Default)]
pub(super) struct Interner {
    pub(super) ids: HashMap<Box<str>, u32>,
    pub(super) strs: Vec<Box<str>>,
}

impl Interner {
    pub(super) fn intern(&mut self, s: &str) -> u32 {
        if let Some(&id) = self.ids.get(s) {
            return id;
        }
        let id = self.strs.len() as u32;
        self.strs.push(s.into());
        self.ids.insert(s.into(), id);
        id
    }

    pub(super) fn get(&self, s: &str) -> u32 {
        self.ids.get(s).copied().unwrap_or(NONE)
    }

    pub(super) fn str(&self, id: u32) -> &str {
        &self.strs[id as usize]
    }
}

/// Label pairs as ids, sorted by key id: the form `label_value` searches.
pub(super) fn label_ids<K: AsRef<str>, V: AsRef<str>>(
    labels: &[(K, V)],
    mut id: impl FnMut(&str) -> u32,
) -> Vec<(u32, u32)> {
    let mut out: Vec<(u32, u32)> = labels
        .iter()
        .map(|(k, v)| (id(k.as_ref()), id(v.as_ref())))
        .collect();
    out.sort_unstable();
    out
}

/// The value id of label `key` in pairs sorted by key id.
pub(super) fn label_value(labels: &[(u32, u32)], key: u32) -> Option<u32> {
    labels
        .binary_search_by(|(k, _)| k.cmp(&key))
        .ok()
        .map(|i| labels[i].1)
}
