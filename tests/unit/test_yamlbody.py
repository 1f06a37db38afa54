"""YAML bodies decode as upstream's YAML-to-JSON conversion does."""

from __future__ import annotations

import pytest
import yaml

from k8slite._native import dumps
from k8slite.apiserver import yamlbody


def test_timestamps_stay_strings() -> None:
    doc = yamlbody.load(b"data:\n  when: 2024-01-02\n  at: 2024-01-02T03:04:05Z\n")
    assert doc == {"data": {"when": "2024-01-02", "at": "2024-01-02T03:04:05Z"}}


def test_mapping_keys_become_strings() -> None:
    doc = yamlbody.load(b"labels:\n  1: a\n  true: b\n  ~: c\n  1.5: d\n")
    assert doc == {"labels": {"1": "a", "true": "b", "null": "c", "1.5": "d"}}
    dumps(doc)  # everything decoded is JSON the codec encodes


def test_other_scalars_resolve_as_json_does() -> None:
    doc = yamlbody.load(b"a: 1\nb: 1.5\nc: true\nd: null\ne: '007'\nf: [x, 2]\n")
    assert doc == {"a": 1, "b": 1.5, "c": True, "d": None, "e": "007", "f": ["x", 2]}


def test_bad_syntax_raises_yaml_error() -> None:
    with pytest.raises(yaml.YAMLError):
        yamlbody.load(b"a: [1, 2\n")


def test_collection_keys_are_refused() -> None:
    with pytest.raises(yaml.YAMLError):
        yamlbody.load(b"? [a, b]\n: c\n")


def test_merge_keys_still_merge() -> None:
    doc = yamlbody.load(b"base: &b {x: 1}\nuse:\n  <<: *b\n  y: 2\n")
    assert doc["use"] == {"x": 1, "y": 2}
