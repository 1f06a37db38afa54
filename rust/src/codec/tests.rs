//! The codec against a real interpreter: round trips, escapes, numbers and Go's error wording.

use std::ffi::CString;

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use super::{dumps, init, loads, DecodeError, MAX_DEPTH};

/// Runs `f` with the interpreter started (pyo3's auto-initialize) and the codec set up.
fn with_codec<R>(f: impl FnOnce(Python<'_>) -> R) -> R {
    Python::attach(|py| {
        init(py).expect("codec init");
        f(py)
    })
}

fn eval<'py>(py: Python<'py>, expr: &str) -> Bound<'py, PyAny> {
    let code = CString::new(expr).expect("no NUL in test source");
    py.eval(&code, None, None).expect("test expression")
}

fn dumped(py: Python<'_>, obj: &Bound<'_, PyAny>) -> Vec<u8> {
    dumps(py, obj).expect("dumps").as_bytes().to_vec()
}

fn loaded<'py>(py: Python<'py>, data: &[u8]) -> PyResult<Bound<'py, PyAny>> {
    loads(py, PyBytes::new(py, data).as_any()).map(|o| o.into_bound(py))
}

fn decode_error(py: Python<'_>, data: &[u8]) -> String {
    let err = loaded(py, data).expect_err("malformed input must fail");
    assert!(err.is_instance_of::<DecodeError>(py), "{err}");
    assert!(err.is_instance_of::<PyValueError>(py));
    err.value(py).to_string()
}

#[test]
fn compact_json_survives_a_round_trip_byte_for_byte() {
    with_codec(|py| {
        let doc: &[u8] = br#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"web-0","labels":{"z":"1","a":"2"},"resourceVersion":"42"},"spec":{"containers":[{"name":"c","image":"nginx:1.27","ports":[{"containerPort":80}]}],"priority":-7,"ratio":0.25,"hostNetwork":false,"nodeName":null},"status":{}}"#;
        let obj = loaded(py, doc).unwrap();
        // Key order is insertion order in both directions (labels stay z before a).
        assert_eq!(dumped(py, &obj), doc);
        assert!(obj.eq(eval(py, "{'apiVersion': 'v1', 'kind': 'Pod', 'metadata': {'name': 'web-0', 'labels': {'z': '1', 'a': '2'}, 'resourceVersion': '42'}, 'spec': {'containers': [{'name': 'c', 'image': 'nginx:1.27', 'ports': [{'containerPort': 80}]}], 'priority': -7, 'ratio': 0.25, 'hostNetwork': False, 'nodeName': None}, 'status': {}}")).unwrap());
    });
}

#[test]
fn whitespace_is_accepted_and_dropped() {
    with_codec(|py| {
        let obj = loaded(py, b" \t\r\n{ \"a\" : [ 1 , 2 ] , \"b\" : { } }\n ").unwrap();
        assert_eq!(dumped(py, &obj), br#"{"a":[1,2],"b":{}}"#);
    });
}

#[test]
fn strings_escape_quotes_backslashes_and_control_characters_only() {
    with_codec(|py| {
        let text = eval(py, r#"'q"b\\n\n\r\t\x08\x0c\x00\x1f\x7fé日'"#);
        let out = dumped(py, &text);
        assert_eq!(
            out,
            "\"q\\\"b\\\\n\\n\\r\\t\\b\\f\\u0000\\u001f\x7fé日\"".as_bytes()
        );
        assert!(loaded(py, &out).unwrap().eq(&text).unwrap());
    });
}

#[test]
fn unicode_escapes_decode_including_surrogate_pairs_and_lone_surrogates() {
    with_codec(|py| {
        let got = loaded(py, br#""\u00e9\u65e5\ud83d\ude00\/""#).unwrap();
        assert!(got.eq("é日😀/").unwrap());
        // A lone surrogate reads as U+FFFD, as Go's decoder reads it.
        let lone = loaded(py, br#""\ud800x""#).unwrap();
        assert!(lone.eq("\u{fffd}x").unwrap());
        // A lone surrogate made in Python is written as an escape: it has no UTF-8 form.
        let made = eval(py, r"'\ud800x'");
        assert_eq!(dumped(py, &made), br#""\ud800x""#);
    });
}

#[test]
fn integers_of_any_size_stay_integers_and_floats_stay_floats() {
    with_codec(|py| {
        let big = b"-123456789012345678901234567890";
        let n = loaded(py, big).unwrap();
        assert!(n.eq(eval(py, "-123456789012345678901234567890")).unwrap());
        assert_eq!(dumped(py, &n), big);
        let zero = loaded(py, b"-0").unwrap();
        assert_eq!(zero.get_type().name().unwrap(), "int");
        let one = loaded(py, b"1.0").unwrap();
        assert_eq!(one.get_type().name().unwrap(), "float");
        assert_eq!(dumped(py, &one), b"1.0");
        assert!(loaded(py, b"1E2").unwrap().eq(100.0).unwrap());
    });
}

#[test]
fn non_finite_floats_and_foreign_types_are_refused() {
    with_codec(|py| {
        let err = dumps(py, &eval(py, "float('nan')")).unwrap_err();
        assert!(err.is_instance_of::<PyValueError>(py));
        assert!(err.value(py).to_string().contains("not JSON compliant"));
        let err = dumps(py, &eval(py, "{1, 2}")).unwrap_err();
        assert!(err.is_instance_of::<PyTypeError>(py));
        assert!(err.value(py).to_string().contains("not JSON serializable"));
        let err = dumps(py, &eval(py, "{1: 2}")).unwrap_err();
        assert!(err.value(py).to_string().contains("keys must be str"));
    });
}

#[test]
fn syntax_errors_use_go_wording_and_byte_offsets() {
    with_codec(|py| {
        let cases: [(&[u8], &str); 9] = [
            (b"", "unexpected end of JSON input at byte 0"),
            (
                b"[1,x",
                "invalid character 'x' looking for beginning of value at byte 3",
            ),
            (
                b"[1 2]",
                "invalid character '2' after array element at byte 3",
            ),
            (
                b"{\"a\" 1}",
                "invalid character '1' after object key at byte 5",
            ),
            (
                b"[1] x",
                "invalid character 'x' after top-level value at byte 4",
            ),
            (
                b"trux",
                "invalid character 'x' in literal true (expecting 'e') at byte 3",
            ),
            (
                b"1.e3",
                "invalid character 'e' after decimal point in numeric literal at byte 2",
            ),
            (
                b"\"a\nb\"",
                "invalid character '\\n' in string literal at byte 2",
            ),
            (b"\"\xff\"", "invalid UTF-8 in string at byte 1"),
        ];
        for (data, message) in cases {
            let got = decode_error(py, data);
            assert!(got.contains(message), "{data:?}: {got:?} lacks {message:?}");
        }
    });
}

#[test]
fn nesting_is_bounded_in_both_directions() {
    // An unoptimised build's frames are large: 1000 levels need more than a test thread's
    // default 2 MiB (Python's main thread, where the extension runs, has 8 MiB).
    let deep = std::thread::Builder::new().stack_size(64 << 20);
    deep.spawn(nesting_is_bounded)
        .expect("thread")
        .join()
        .expect("no panic");
}

fn nesting_is_bounded() {
    with_codec(|py| {
        let depth = MAX_DEPTH as usize;
        let deepest = [vec![b'['; depth], vec![b']'; depth]].concat();
        let obj = loaded(py, &deepest).unwrap();
        assert_eq!(dumped(py, &obj), deepest);
        let too_deep = [vec![b'['; depth + 1], vec![b']'; depth + 1]].concat();
        assert!(decode_error(py, &too_deep).contains("exceeded max depth of 1000 at byte 1000"));
        let cycle = eval(py, "(lambda l: (l.append(l), l)[1])([])");
        let err = dumps(py, &cycle).unwrap_err();
        assert!(err.is_instance_of::<PyValueError>(py));
    });
}
