//! The watch cache: per resource type, the current objects (in key order) and a bounded ring
//! of recent events, answering LIST and WATCH with selectors evaluated here.
//!
//! Every object version is held once, as its pre-encoded watch frame
//! `{"type":"ADDED","object":<json>}\n` in a Python bytes object; the object's JSON is a slice
//! of it. The map and the ring share versions through `Arc`, so an object that is both current
//! and in the ring costs one copy. Frames are handed to watchers as the same bytes object.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ops::Bound as Edge;
use std::sync::{Arc, OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use pyo3::exceptions::{PyException, PyValueError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};

use crate::gillock;
use crate::jsonscan::{extract, locate, PathTree};
use crate::selector::{FieldSelector, FieldTerm, LabelSelector, SelectorError};

pyo3::create_exception!(
    k8slite._native,
    ExpiredError,
    PyException,
    "The requested resourceVersion is older than the event ring holds (410 Gone)."
);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Added,
    Modified,
    Deleted,
}

impl Kind {
    fn prefix(self) -> &'static [u8] {
        match self {
            Kind::Added => b"{\"type\":\"ADDED\",\"object\":",
            Kind::Modified => b"{\"type\":\"MODIFIED\",\"object\":",
            Kind::Deleted => b"{\"type\":\"DELETED\",\"object\":",
        }
    }
}

const SUFFIX: &[u8] = b"}\n";

/// A new bytes object of `size` bytes whose contents the caller must fill. (PyBytes::new_with
/// would zero it first: for a LIST of 100,000 pods that is 150 MB written twice.)
fn uninit_bytes(py: Python<'_>, size: usize) -> PyResult<Bound<'_, PyBytes>> {
    // SAFETY: a null source asks CPython for an uninitialised buffer of `size` bytes.
    let ptr = unsafe { ffi::PyBytes_FromStringAndSize(std::ptr::null(), size as ffi::Py_ssize_t) };
    if ptr.is_null() {
        return Err(PyErr::fetch(py));
    }
    // SAFETY: `ptr` is a new, owned reference to a bytes object.
    Ok(unsafe { Bound::from_owned_ptr(py, ptr).cast_into_unchecked() })
}

/// Builds a frame around `object` as a new bytes object.
fn frame(py: Python<'_>, kind: Kind, object: &[u8]) -> Py<PyBytes> {
    let prefix = kind.prefix();
    let len = prefix.len() + object.len() + SUFFIX.len();
    PyBytes::new_with(py, len, |buf| {
        buf[..prefix.len()].copy_from_slice(prefix);
        buf[prefix.len()..len - SUFFIX.len()].copy_from_slice(object);
        buf[len - SUFFIX.len()..].copy_from_slice(SUFFIX);
        Ok(())
    })
    .expect("bytes allocation")
    .unbind()
}

/// One stored version of one object.
struct Obj {
    key: Arc<str>,
    rv: u64,
    kind: Kind,
    frame: Py<PyBytes>,
    /// The frame's contents, readable without the GIL (see `bytes`).
    data: *const u8,
    len: usize,
    /// Labels (sorted by key) then field values, concatenated; `ends` holds end offsets.
    text: Box<str>,
    ends: Box<[u32]>,
    nlabels: u32,
}

// SAFETY: `data` points into the immutable buffer of `frame`, a bytes object this struct
// keeps alive, so reading it from any thread is sound for as long as the Obj exists. The
// Python object itself is only touched (reference counts) with the GIL held: Objs are
// created and dropped under the GIL (see WatchCache::list, which re-attaches before drop).
unsafe impl Send for Obj {}
unsafe impl Sync for Obj {}

impl Obj {
    fn new(
        py: Python<'_>,
        key: Arc<str>,
        rv: u64,
        kind: Kind,
        object: &[u8],
        attrs: Attrs,
    ) -> Self {
        let frame = frame(py, kind, object);
        let bound = frame.bind(py);
        let data = bound.as_bytes().as_ptr();
        let len = bound.as_bytes().len();
        Obj {
            key,
            rv,
            kind,
            frame,
            data,
            len,
            text: attrs.text,
            ends: attrs.ends,
            nlabels: attrs.nlabels,
        }
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: see the Send/Sync impls: the buffer lives and stays unchanged as long as
        // `self.frame`.
        unsafe { std::slice::from_raw_parts(self.data, self.len) }
    }

    /// The object's JSON.
    fn object(&self) -> &[u8] {
        &self.bytes()[self.kind.prefix().len()..self.len - SUFFIX.len()]
    }

    fn piece(&self, i: usize) -> &str {
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        &self.text[start..self.ends[i] as usize]
    }

    fn label(&self, key: &str) -> Option<&str> {
        let (mut lo, mut hi) = (0, self.nlabels as usize);
        while lo < hi {
            let mid = (lo + hi) / 2;
            match self.piece(2 * mid).cmp(key) {
                std::cmp::Ordering::Equal => return Some(self.piece(2 * mid + 1)),
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
            }
        }
        None
    }

    fn field(&self, i: usize) -> &str {
        self.piece(2 * self.nlabels as usize + i)
    }
}

struct Attrs {
    text: Box<str>,
    ends: Box<[u32]>,
    nlabels: u32,
}

impl Attrs {
    fn read(data: &[u8], tree: &PathTree, nfields: usize) -> Result<Attrs, String> {
        let found = extract(data, tree, nfields)?;
        let mut text = String::new();
        let mut ends = Vec::with_capacity(found.labels.len() * 2 + nfields);
        let mut push = |s: &str| {
            text.push_str(s);
            ends.push(text.len() as u32);
        };
        for (k, v) in &found.labels {
            push(k);
            push(v);
        }
        for f in &found.fields {
            push(f);
        }
        Ok(Attrs {
            text: text.into_boxed_str(),
            ends: ends.into_boxed_slice(),
            nlabels: found.labels.len() as u32,
        })
    }
}

/// One change, with the version it replaced (None for a creation).
struct Event {
    rv: u64,
    /// When it was applied: the ring keeps events younger than its window.
    at: Instant,
    kind: Kind,
    /// The new version; for DELETED the object's final state (not in the map).
    new: Arc<Obj>,
    prev: Option<Arc<Obj>>,
    /// For watchers whose selector the object starts matching: `new` as ADDED.
    added: OnceLock<Py<PyBytes>>,
    /// For watchers whose selector it stops matching: `prev` as DELETED at this rv.
    deleted: OnceLock<Py<PyBytes>>,
}

struct Inner {
    map: BTreeMap<Arc<str>, Arc<Obj>>,
    ring: VecDeque<Event>,
    /// The ring holds at least `capacity` events, more while they are younger than
    /// `window` (as upstream's watch cache keeps 75 s of history: a watcher or a paginated
    /// LIST that fell that far behind at a burst of writes can still resume), but never
    /// more than `max_capacity`.
    capacity: usize,
    window: Duration,
    max_capacity: usize,
    revision: u64,
    oldest: u64,
    /// Until the first advance() or apply(): load() fills the cache from a store snapshot.
    warming: bool,
}

/// Selectors resolved against this cache's field paths.
struct Filter<'a> {
    label: Option<&'a LabelSelector>,
    fields: Vec<(usize, &'a FieldTerm)>,
}

impl Filter<'_> {
    fn everything(&self) -> bool {
        self.label.is_none() && self.fields.is_empty()
    }

    fn matches(&self, obj: &Obj) -> bool {
        if let Some(label) = self.label {
            if !label.matches_with(|k| obj.label(k)) {
                return false;
            }
        }
        self.fields
            .iter()
            .all(|(i, term)| term.matches(obj.field(*i)))
    }
}

/// Current objects and a ring of recent events for one resource type.
#[pyclass(frozen, module = "k8slite._native")]
pub struct WatchCache {
    inner: RwLock<Inner>,
    tree: PathTree,
    field_index: HashMap<String, usize>,
}

impl WatchCache {
    // A LIST running in another thread holds the lock with the GIL released.
    fn read(&self, py: Python<'_>) -> RwLockReadGuard<'_, Inner> {
        gillock::read(py, &self.inner)
    }

    fn write(&self, py: Python<'_>) -> RwLockWriteGuard<'_, Inner> {
        gillock::write(py, &self.inner)
    }

    fn filter<'a>(
        &self,
        label: Option<&'a LabelSelector>,
        field: Option<&'a FieldSelector>,
    ) -> PyResult<Filter<'a>> {
        let mut fields = Vec::new();
        for term in field.map(|f| f.terms.as_slice()).unwrap_or_default() {
            let Some(&i) = self.field_index.get(&term.field) else {
                return Err(SelectorError::new_err(format!(
                    "field label not supported: {}",
                    term.field
                )));
            };
            fields.push((i, term));
        }
        Ok(Filter {
            label: label.filter(|l| !l.selects_all()),
            fields,
        })
    }

    fn attrs(&self, data: &[u8]) -> PyResult<Attrs> {
        Attrs::read(data, &self.tree, self.field_index.len()).map_err(PyValueError::new_err)
    }
}

fn expired(rv: u64, oldest: u64) -> PyErr {
    ExpiredError::new_err(format!("too old resource version: {rv} ({oldest})"))
}

/// Objects of one LIST page, chosen under the lock.
struct Page {
    items: Vec<Arc<Obj>>,
    last_key: Option<String>,
    remaining: usize,
}

impl Inner {
    /// The state as of `at` (None: now) of every key under `prefix` after `start_after`, in
    /// key order. Versions changed since `at` are replaced by the ones the ring remembers.
    fn walk<'a>(
        &'a self,
        prefix: &'a str,
        start_after: Option<&'a str>,
        at: Option<u64>,
    ) -> impl Iterator<Item = &'a Arc<Obj>> + 'a {
        let lower = match start_after {
            Some(s) if s >= prefix => Edge::Excluded(s),
            _ => Edge::Included(prefix),
        };
        // Undo, newest first, every event after `at`: the oldest such event's `prev` is the
        // version that was current at `at` (None: the key did not exist then).
        let mut overlay: BTreeMap<&str, Option<&Arc<Obj>>> = BTreeMap::new();
        if let Some(at) = at {
            let first = self.ring.partition_point(|e| e.rv <= at);
            for e in self.ring.range(first..).rev() {
                if e.new.key.starts_with(prefix) {
                    overlay.insert(&e.new.key, e.prev.as_ref());
                }
            }
        }
        let current = self
            .map
            .range::<str, _>((lower, Edge::Unbounded))
            .take_while(move |(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (&**k, Some(v)));
        let past = overlay.into_iter().filter(move |(k, _)| match lower {
            Edge::Excluded(s) => *k > s,
            _ => true,
        });
        Merge {
            a: current.peekable(),
            b: past.peekable(),
        }
        .filter_map(|(_, v)| v)
    }

    fn page(
        &self,
        prefix: &str,
        filter: &Filter<'_>,
        limit: usize,
        start_after: Option<&str>,
        at: Option<u64>,
    ) -> Page {
        let mut items = Vec::new();
        let mut remaining = 0;
        for obj in self.walk(prefix, start_after, at) {
            if !filter.matches(obj) {
                continue;
            }
            if limit == 0 || items.len() < limit {
                items.push(Arc::clone(obj));
            } else {
                remaining += 1;
            }
        }
        let last_key = (remaining > 0)
            .then(|| items.last().map(|o| o.key.to_string()))
            .flatten();
        Page {
            items,
            last_key,
            remaining,
        }
    }

    fn check_at(&self, at: Option<u64>) -> PyResult<Option<u64>> {
        match at {
            Some(at) if at < self.oldest => Err(expired(at, self.oldest)),
            Some(at) if at < self.revision => Ok(Some(at)),
            _ => Ok(None),
        }
    }
}

/// Merges two key-ordered streams; on equal keys the second (the past) wins.
struct Merge<A: Iterator, B: Iterator> {
    a: std::iter::Peekable<A>,
    b: std::iter::Peekable<B>,
}

impl<'a, A, B> Iterator for Merge<A, B>
where
    A: Iterator<Item = (&'a str, Option<&'a Arc<Obj>>)>,
    B: Iterator<Item = (&'a str, Option<&'a Arc<Obj>>)>,
{
    type Item = (&'a str, Option<&'a Arc<Obj>>);

    fn next(&mut self) -> Option<Self::Item> {
        match (self.a.peek(), self.b.peek()) {
            (Some(x), Some(y)) => match x.0.cmp(y.0) {
                std::cmp::Ordering::Less => self.a.next(),
                std::cmp::Ordering::Greater => self.b.next(),
                std::cmp::Ordering::Equal => {
                    self.a.next();
                    self.b.next()
                }
            },
            (Some(_), None) => self.a.next(),
            (None, _) => self.b.next(),
        }
    }
}

#[pymethods]
impl WatchCache {
    #[new]
    #[pyo3(signature = (field_paths, capacity = 10000, window = 0.0, max_capacity = 0))]
    fn py_new(
        field_paths: Vec<String>,
        capacity: usize,
        window: f64,
        max_capacity: usize,
    ) -> PyResult<Self> {
        if capacity == 0 {
            return Err(PyValueError::new_err("capacity must be at least 1"));
        }
        if !(window.is_finite() && window >= 0.0) {
            return Err(PyValueError::new_err(
                "window must be a number of seconds, 0 or more",
            ));
        }
        let field_index = field_paths
            .iter()
            .enumerate()
            .map(|(i, p)| (p.clone(), i))
            .collect();
        Ok(WatchCache {
            inner: RwLock::new(Inner {
                map: BTreeMap::new(),
                ring: VecDeque::with_capacity(capacity.min(1 << 16)),
                capacity,
                window: Duration::from_secs_f64(window),
                max_capacity: max_capacity.max(capacity),
                revision: 0,
                oldest: 0,
                warming: true,
            }),
            tree: PathTree::new(&field_paths),
            field_index,
        })
    }

    /// Warm-up: stores an object read from the store snapshot, without an event. Only
    /// before the first advance() or apply().
    fn load(&self, py: Python<'_>, key: &str, rv: u64, data: &[u8]) -> PyResult<()> {
        let attrs = self.attrs(data)?;
        let mut inner = self.write(py);
        if !inner.warming {
            return Err(PyValueError::new_err(
                "load() after warm-up ended (the first advance() or apply()): build a new cache",
            ));
        }
        let key: Arc<str> = Arc::from(key);
        let obj = Obj::new(py, key.clone(), rv, Kind::Added, data, attrs);
        inner.map.insert(key, Arc::new(obj));
        inner.revision = inner.revision.max(rv);
        inner.oldest = inner.oldest.max(rv);
        Ok(())
    }

    /// Records ADDED, MODIFIED or DELETED of `key` at `rv`.
    ///
    /// All events of one store revision must be applied before watchers are woken: a watcher
    /// that has seen revision N never asks for N again. The type is normalised by whether the
    /// key is present (ADDED of a present key is recorded as MODIFIED and vice versa), so
    /// the stream always agrees with LIST.
    #[pyo3(signature = (r#type, key, rv, data))]
    fn apply(&self, py: Python<'_>, r#type: &str, key: &str, rv: u64, data: &[u8]) -> PyResult<()> {
        let deleted = match r#type {
            "ADDED" | "MODIFIED" => false,
            "DELETED" => true,
            other => {
                return Err(PyValueError::new_err(format!(
                    "unknown event type {other:?}"
                )));
            }
        };
        let attrs = self.attrs(data)?;
        let mut guard = self.write(py);
        let inner = &mut *guard;
        if rv < inner.revision {
            return Err(PyValueError::new_err(format!(
                "resourceVersion {rv} is older than the cache's revision {}",
                inner.revision
            )));
        }
        let key: Arc<str> = match inner.map.get_key_value(key) {
            Some((k, _)) => Arc::clone(k),
            None => Arc::from(key),
        };
        let (kind, prev) = if deleted {
            (Kind::Deleted, inner.map.remove(&key))
        } else {
            let prev = inner.map.get(&key).cloned();
            (
                if prev.is_some() {
                    Kind::Modified
                } else {
                    Kind::Added
                },
                prev,
            )
        };
        let new = Arc::new(Obj::new(py, Arc::clone(&key), rv, kind, data, attrs));
        if !deleted {
            inner.map.insert(key, Arc::clone(&new));
        }
        let now = Instant::now();
        inner.ring.push_back(Event {
            rv,
            at: now,
            kind,
            new,
            prev,
            added: OnceLock::new(),
            deleted: OnceLock::new(),
        });
        while inner.ring.len() > inner.capacity {
            let young = inner
                .ring
                .front()
                .is_some_and(|e| now.duration_since(e.at) < inner.window);
            if young && inner.ring.len() <= inner.max_capacity {
                break;
            }
            if let Some(old) = inner.ring.pop_front() {
                inner.oldest = old.rv;
            }
        }
        inner.revision = rv;
        inner.warming = false;
        Ok(())
    }

    /// Notes the store's revision when it moved on without touching this resource. The
    /// first call before any apply() ends warm-up: the cache then starts at `rv`, and
    /// oldest() says so (nothing before the snapshot can be replayed).
    fn advance(&self, py: Python<'_>, rv: u64) {
        let mut inner = self.write(py);
        inner.revision = inner.revision.max(rv);
        if inner.warming {
            inner.warming = false;
            inner.oldest = inner.revision;
        }
    }

    fn revision(&self, py: Python<'_>) -> u64 {
        self.read(py).revision
    }

    /// Events with rv > oldest() are all in the ring; older starts are Expired.
    fn oldest(&self, py: Python<'_>) -> u64 {
        self.read(py).oldest
    }

    fn get<'py>(&self, py: Python<'py>, key: &str) -> Option<(Bound<'py, PyBytes>, u64)> {
        let inner = self.read(py);
        inner
            .map
            .get(key)
            .map(|obj| (PyBytes::new(py, obj.object()), obj.rv))
    }

    fn __len__(&self, py: Python<'_>) -> usize {
        self.read(py).map.len()
    }

    /// Matching objects in key order as one JSON array: (items, count, last_key, remaining).
    #[pyo3(signature = (prefix, label = None, field = None, limit = 0, start_after = None, at_revision = None, envelope = None))]
    #[allow(clippy::too_many_arguments)]
    fn list<'py>(
        &self,
        py: Python<'py>,
        prefix: &str,
        label: Option<&Bound<'py, LabelSelector>>,
        field: Option<&Bound<'py, FieldSelector>>,
        limit: usize,
        start_after: Option<&str>,
        at_revision: Option<u64>,
        envelope: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<(Bound<'py, PyBytes>, usize, Option<String>, usize)> {
        let filter = self.filter(label.map(|l| l.get()), field.map(|f| f.get()))?;
        // Choosing the page runs without the GIL; it returns owned versions so the lock is
        // not held while the output is written.
        let page = py.detach(|| -> PyResult<Page> {
            let inner = self.inner.read().unwrap_or_else(|p| p.into_inner());
            let at = inner.check_at(at_revision)?;
            Ok(inner.page(prefix, &filter, limit, start_after, at))
        })?;
        // The envelope (a list object's head and tail) depends on the page, so it is asked
        // for now and written around the items in the same buffer: a big LIST is copied once.
        let (head, tail): (Vec<u8>, Vec<u8>) = match envelope {
            Some(f) => {
                let (h, t): (Bound<'py, PyBytes>, Bound<'py, PyBytes>) = f
                    .call1((page.last_key.clone(), page.remaining))?
                    .extract()?;
                (h.as_bytes().to_vec(), t.as_bytes().to_vec())
            }
            None => (Vec::new(), Vec::new()),
        };
        let size = head.len()
            + tail.len()
            + 2
            + page
                .items
                .iter()
                .map(|o| o.object().len() + 1)
                .sum::<usize>()
            - usize::from(!page.items.is_empty());
        let out = uninit_bytes(py, size)?;
        // SAFETY: `out` is a new bytes object that nothing else has seen yet, so writing its
        // buffer (with the GIL released) cannot race; every byte is written below.
        let buf = unsafe {
            std::slice::from_raw_parts_mut(ffi::PyBytes_AsString(out.as_ptr()) as *mut u8, size)
        };
        let items = &page.items;
        py.detach(|| {
            buf[..head.len()].copy_from_slice(&head);
            let mut at = head.len();
            buf[at] = b'[';
            at += 1;
            for (i, obj) in items.iter().enumerate() {
                if i > 0 {
                    buf[at] = b',';
                    at += 1;
                }
                let object = obj.object();
                buf[at..at + object.len()].copy_from_slice(object);
                at += object.len();
            }
            buf[at] = b']';
            buf[at + 1..].copy_from_slice(&tail);
        });
        let count = page.items.len();
        // The versions are dropped here, with the GIL held (they own bytes objects).
        Ok((out, count, page.last_key, page.remaining))
    }

    /// ADDED frames for every matching current object, and the revision they reflect.
    #[pyo3(signature = (prefix, label = None, field = None))]
    fn initial_events<'py>(
        &self,
        py: Python<'py>,
        prefix: &str,
        label: Option<&Bound<'py, LabelSelector>>,
        field: Option<&Bound<'py, FieldSelector>>,
    ) -> PyResult<(Bound<'py, PyList>, u64)> {
        let filter = self.filter(label.map(|l| l.get()), field.map(|f| f.get()))?;
        let (page, revision) = py.detach(|| {
            let inner = self.inner.read().unwrap_or_else(|p| p.into_inner());
            (inner.page(prefix, &filter, 0, None, None), inner.revision)
        });
        let frames = page.items.iter().map(|obj| match obj.kind {
            Kind::Added => obj.frame.clone_ref(py),
            _ => frame(py, Kind::Added, obj.object()),
        });
        Ok((PyList::new(py, frames)?, revision))
    }

    /// Watch frames for events after `rv`, and the rv to resume from (see the .pyi).
    #[pyo3(signature = (rv, prefix, label = None, field = None, max_events = 0))]
    fn events_since<'py>(
        &self,
        py: Python<'py>,
        rv: u64,
        prefix: &str,
        label: Option<&Bound<'py, LabelSelector>>,
        field: Option<&Bound<'py, FieldSelector>>,
        max_events: usize,
    ) -> PyResult<(Bound<'py, PyList>, u64)> {
        let filter = self.filter(label.map(|l| l.get()), field.map(|f| f.get()))?;
        let inner = self.read(py);
        if rv < inner.oldest {
            return Err(expired(rv, inner.oldest));
        }
        let mut frames: Vec<Py<PyBytes>> = Vec::new();
        let first = inner.ring.partition_point(|e| e.rv <= rv);
        let mut resume = inner.revision.max(rv);
        let mut last_rv = None;
        for e in inner.ring.range(first..) {
            // Stop only between revisions: the events of one revision go out together.
            if max_events > 0 && frames.len() >= max_events && last_rv != Some(e.rv) {
                resume = last_rv.unwrap_or(rv);
                break;
            }
            last_rv = Some(e.rv);
            if !e.new.key.starts_with(prefix) {
                continue;
            }
            if let Some(f) = transition(py, e, &filter) {
                frames.push(f);
            }
        }
        drop(inner);
        Ok((PyList::new(py, frames)?, resume))
    }
}

/// The frame a watcher with `filter` receives for `e`, following upstream's watch cache:
/// an object that starts matching is ADDED, one that stops matching is DELETED (its previous
/// state, at the event's resourceVersion), one that matches before and after is MODIFIED.
fn transition(py: Python<'_>, e: &Event, filter: &Filter<'_>) -> Option<Py<PyBytes>> {
    let (now, before) = if filter.everything() {
        (
            e.kind != Kind::Deleted,
            e.kind == Kind::Deleted || e.prev.is_some(),
        )
    } else {
        let now = e.kind != Kind::Deleted && filter.matches(&e.new);
        let before = match (&e.prev, e.kind) {
            (Some(prev), _) => filter.matches(prev),
            // A deletion of a key the cache did not hold: judge by the final state.
            (None, Kind::Deleted) => filter.matches(&e.new),
            (None, _) => false,
        };
        (now, before)
    };
    match (now, before) {
        (true, false) if e.kind == Kind::Added => Some(e.new.frame.clone_ref(py)),
        (true, false) => Some(
            e.added
                .get_or_init(|| frame(py, Kind::Added, e.new.object()))
                .clone_ref(py),
        ),
        (true, true) => Some(e.new.frame.clone_ref(py)),
        (false, true) if e.kind == Kind::Deleted => Some(e.new.frame.clone_ref(py)),
        (false, true) => {
            let prev = e.prev.as_ref()?;
            let f = e.deleted.get_or_init(|| {
                frame(
                    py,
                    Kind::Deleted,
                    &with_resource_version(prev.object(), e.rv),
                )
            });
            Some(f.clone_ref(py))
        }
        (false, false) => None,
    }
}

/// `object` with metadata.resourceVersion set to `rv` (inserted if absent).
fn with_resource_version(object: &[u8], rv: u64) -> Vec<u8> {
    let value = format!("\"{rv}\"");
    let mut out = Vec::with_capacity(object.len() + value.len() + 20);
    match locate(object, &["metadata", "resourceVersion"]) {
        Ok(loc) => match (loc.value, loc.parent_open) {
            (Some((start, end)), _) => {
                out.extend_from_slice(&object[..start]);
                out.extend_from_slice(value.as_bytes());
                out.extend_from_slice(&object[end..]);
            }
            (None, Some((open, 1))) => {
                // metadata exists without a resourceVersion: add it first.
                let empty = object[open..].iter().find(|c| !c.is_ascii_whitespace()) == Some(&b'}');
                out.extend_from_slice(&object[..open]);
                out.extend_from_slice(b"\"resourceVersion\":");
                out.extend_from_slice(value.as_bytes());
                if !empty {
                    out.push(b',');
                }
                out.extend_from_slice(&object[open..]);
            }
            _ => out.extend_from_slice(object),
        },
        Err(_) => out.extend_from_slice(object),
    }
    out
}

#[cfg(test)]
mod tests;
