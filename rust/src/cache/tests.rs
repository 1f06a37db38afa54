//! The watch cache through its own methods: LIST pages and snapshots, watch frames with
//! selectors, and the event ring's eviction.

use pyo3::prelude::*;
use pyo3::types::PyBytes;

use super::{ExpiredError, WatchCache};
use crate::selector::{FieldSelector, LabelSelector, SelectorError};

const PODS: &str = "/registry/core/pods/";

fn pod(name: &str, rv: u64, app: &str, node: &str) -> Vec<u8> {
    format!(
        r#"{{"metadata":{{"name":"{name}","namespace":"ns","labels":{{"app":"{app}"}},"resourceVersion":"{rv}"}},"spec":{{"nodeName":"{node}"}}}}"#
    )
    .into_bytes()
}

fn key(name: &str) -> String {
    format!("{PODS}ns/{name}")
}

fn cache(capacity: usize) -> WatchCache {
    WatchCache::py_new(vec!["spec.nodeName".to_string()], capacity, 0.0, 0).expect("cache")
}

fn apply(py: Python<'_>, c: &WatchCache, kind: &str, name: &str, rv: u64, app: &str, node: &str) {
    c.apply(py, kind, &key(name), rv, &pod(name, rv, app, node))
        .expect("apply");
}

fn labels<'py>(py: Python<'py>, text: &str) -> Bound<'py, LabelSelector> {
    Bound::new(py, LabelSelector::parse(text).expect("selector")).expect("object")
}

fn fields<'py>(py: Python<'py>, text: &str) -> Bound<'py, FieldSelector> {
    Bound::new(py, FieldSelector::parse(text).expect("selector")).expect("object")
}

/// The names in a LIST answer, in order.
fn names(items: &Bound<'_, PyBytes>) -> Vec<String> {
    let text = std::str::from_utf8(items.as_bytes()).expect("utf-8");
    text.split(r#""name":""#)
        .skip(1)
        .map(|rest| rest[..rest.find('"').expect("closing quote")].to_string())
        .collect()
}

fn frames(list: &Bound<'_, pyo3::types::PyList>) -> Vec<String> {
    list.iter()
        .map(|f| String::from_utf8(f.extract::<Vec<u8>>().expect("bytes")).expect("utf-8"))
        .collect()
}

#[test]
fn list_answers_in_key_order_with_selectors_and_pages() {
    Python::attach(|py| {
        let c = cache(100);
        apply(py, &c, "ADDED", "c", 1, "web", "n1");
        apply(py, &c, "ADDED", "a", 2, "db", "");
        apply(py, &c, "ADDED", "b", 3, "web", "n2");
        c.apply(py, "ADDED", "/registry/core/podsx/ns/z", 4, b"{}")
            .unwrap();
        let (items, count, last, remaining) =
            c.list(py, PODS, None, None, 0, None, None, None).unwrap();
        assert_eq!(
            (names(&items), count, last, remaining),
            (vec!["a".into(), "b".into(), "c".into()], 3, None, 0)
        );
        assert!(items.as_bytes().starts_with(b"[{") && items.as_bytes().ends_with(b"}]"));

        let web = labels(py, "app=web");
        let (items, ..) = c
            .list(py, PODS, Some(&web), None, 0, None, None, None)
            .unwrap();
        assert_eq!(names(&items), ["b", "c"]);
        let unscheduled = fields(py, "spec.nodeName=");
        let (items, ..) = c
            .list(py, PODS, None, Some(&unscheduled), 0, None, None, None)
            .unwrap();
        assert_eq!(names(&items), ["a"]);

        // A page of one, then the rest after its key, as a continue token would ask.
        let (items, count, last, remaining) =
            c.list(py, PODS, None, None, 1, None, None, None).unwrap();
        assert_eq!((names(&items), count, remaining), (vec!["a".into()], 1, 2));
        let last = last.expect("a cut page names its last key");
        let (items, _, last, _) = c
            .list(py, PODS, None, None, 0, Some(&last), None, None)
            .unwrap();
        assert_eq!((names(&items), last), (vec!["b".into(), "c".into()], None));

        let (empty, count, ..) = c
            .list(py, "/registry/core/nodes/", None, None, 0, None, None, None)
            .unwrap();
        assert_eq!((empty.as_bytes(), count), (&b"[]"[..], 0));
    });
}

#[test]
fn list_at_an_older_revision_undoes_newer_events() {
    Python::attach(|py| {
        let c = cache(100);
        apply(py, &c, "ADDED", "a", 1, "v1", "");
        apply(py, &c, "ADDED", "b", 2, "v1", "");
        apply(py, &c, "MODIFIED", "a", 3, "v2", "");
        apply(py, &c, "DELETED", "b", 4, "v1", "");
        let (now, ..) = c.list(py, PODS, None, None, 0, None, None, None).unwrap();
        assert_eq!(names(&now), ["a"]);
        let (then, ..) = c
            .list(py, PODS, None, None, 0, None, Some(2), None)
            .unwrap();
        assert_eq!(names(&then), ["a", "b"]);
        let text = std::str::from_utf8(then.as_bytes()).unwrap();
        assert!(text.contains(r#""app":"v1""#) && !text.contains(r#""app":"v2""#));
        let (item, rv) = c.get(py, &key("a")).unwrap();
        assert_eq!((item.as_bytes(), rv), (&pod("a", 3, "v2", "")[..], 3));
        assert!(c.get(py, &key("b")).is_none());
    });
}

#[test]
fn events_are_normalised_by_presence_and_framed_for_watchers() {
    Python::attach(|py| {
        let c = cache(100);
        apply(py, &c, "MODIFIED", "a", 1, "web", "");
        apply(py, &c, "ADDED", "a", 2, "web", "n1");
        apply(py, &c, "DELETED", "a", 3, "web", "n1");
        let (list, resume) = c.events_since(py, 0, PODS, None, None, 0).unwrap();
        let got = frames(&list);
        assert_eq!(resume, 3);
        assert_eq!(got.len(), 3);
        let object = String::from_utf8(pod("a", 1, "web", "")).unwrap();
        assert_eq!(
            got[0],
            format!("{{\"type\":\"ADDED\",\"object\":{object}}}\n")
        );
        assert!(got[1].starts_with(r#"{"type":"MODIFIED","object":"#));
        assert!(got[2].starts_with(r#"{"type":"DELETED","object":"#));
        // Caught up: nothing more, resume at the revision.
        let (list, resume) = c.events_since(py, 3, PODS, None, None, 0).unwrap();
        assert_eq!((list.len(), resume), (0, 3));
    });
}

#[test]
fn a_selector_sees_objects_arrive_and_leave() {
    Python::attach(|py| {
        let c = cache(100);
        apply(py, &c, "ADDED", "a", 1, "db", "");
        apply(py, &c, "MODIFIED", "a", 2, "web", "");
        apply(py, &c, "MODIFIED", "a", 3, "db", "");
        let web = labels(py, "app=web");
        let got = frames(&c.events_since(py, 0, PODS, Some(&web), None, 0).unwrap().0);
        assert_eq!(got.len(), 2);
        // Starts matching: ADDED with the new state.
        assert!(got[0].starts_with(r#"{"type":"ADDED","object":"#));
        assert!(got[0].contains(r#""app":"web""#) && got[0].contains(r#""resourceVersion":"2""#));
        // Stops matching: DELETED with the state it matched in, at the event's version.
        assert!(got[1].starts_with(r#"{"type":"DELETED","object":"#));
        assert!(got[1].contains(r#""app":"web""#) && got[1].contains(r#""resourceVersion":"3""#));
    });
}

#[test]
fn max_events_never_splits_a_revision() {
    Python::attach(|py| {
        let c = cache(100);
        apply(py, &c, "ADDED", "a", 5, "x", "");
        apply(py, &c, "ADDED", "b", 5, "x", "");
        apply(py, &c, "ADDED", "c", 6, "x", "");
        let (list, resume) = c.events_since(py, 0, PODS, None, None, 1).unwrap();
        assert_eq!((list.len(), resume), (2, 5));
        let (list, resume) = c.events_since(py, resume, PODS, None, None, 1).unwrap();
        assert_eq!((list.len(), resume), (1, 6));
    });
}

#[test]
fn the_ring_evicts_its_oldest_events_and_older_starts_expire() {
    Python::attach(|py| {
        let c = cache(2);
        for (rv, name) in [(1, "a"), (2, "b"), (3, "c")] {
            apply(py, &c, "ADDED", name, rv, "x", "");
        }
        assert_eq!((c.oldest(py), c.revision(py), c.__len__(py)), (1, 3, 3));
        let err = c.events_since(py, 0, PODS, None, None, 0).unwrap_err();
        assert!(err.is_instance_of::<ExpiredError>(py));
        assert_eq!(err.value(py).to_string(), "too old resource version: 0 (1)");
        let got = frames(&c.events_since(py, 1, PODS, None, None, 0).unwrap().0);
        assert_eq!(got.len(), 2);
        assert!(got[0].contains(r#""name":"b""#) && got[1].contains(r#""name":"c""#));
        let err = c
            .list(py, PODS, None, None, 0, None, Some(0), None)
            .unwrap_err();
        assert!(err.is_instance_of::<ExpiredError>(py));
    });
}

#[test]
fn warm_up_loads_a_snapshot_then_starts_at_its_revision() {
    Python::attach(|py| {
        let c = cache(10);
        c.load(py, &key("a"), 4, &pod("a", 4, "x", "")).unwrap();
        c.load(py, &key("b"), 7, &pod("b", 7, "x", "")).unwrap();
        c.advance(py, 9);
        assert_eq!((c.oldest(py), c.revision(py)), (9, 9));
        let err = c.load(py, &key("c"), 10, b"{}").unwrap_err();
        assert!(err.to_string().contains("after warm-up ended"));
        let (list, rv) = c.initial_events(py, PODS, None, None).unwrap();
        let got = frames(&list);
        assert_eq!(rv, 9);
        assert!(got
            .iter()
            .all(|f| f.starts_with(r#"{"type":"ADDED","object":"#)));
        assert!(c.events_since(py, 8, PODS, None, None, 0).is_err());
    });
}

#[test]
fn bad_input_is_refused_with_reasons() {
    Python::attach(|py| {
        let c = cache(10);
        apply(py, &c, "ADDED", "a", 5, "x", "");
        let older = c.apply(py, "ADDED", &key("b"), 4, &pod("b", 4, "x", ""));
        assert!(older
            .unwrap_err()
            .to_string()
            .contains("older than the cache's revision 5"));
        let unknown = c.apply(py, "BOOKMARK", &key("b"), 6, b"{}");
        assert!(unknown
            .unwrap_err()
            .to_string()
            .contains("unknown event type \"BOOKMARK\""));
        let name = fields(py, "metadata.name=a");
        let err = c
            .list(py, PODS, None, Some(&name), 0, None, None, None)
            .unwrap_err();
        assert!(err.is_instance_of::<SelectorError>(py));
        assert_eq!(
            err.value(py).to_string(),
            "field label not supported: metadata.name"
        );
        assert!(WatchCache::py_new(Vec::new(), 0, 0.0, 0).is_err());
        assert!(WatchCache::py_new(Vec::new(), 1, f64::NAN, 0).is_err());
    });
}
