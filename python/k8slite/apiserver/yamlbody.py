"""YAML request bodies read the way upstream reads them: as JSON written in YAML.

Upstream converts YAML to JSON before decoding, so an unquoted timestamp stays the string
it was written as and a mapping key is always a string. PyYAML's safe loader would make
the first a datetime and keep the second an int, neither of which JSON (or our codec) holds.
"""

from __future__ import annotations

from typing import Any

import yaml

_BASE: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_TIMESTAMP = "tag:yaml.org,2002:timestamp"


def _key(key: object) -> object:
    if isinstance(key, bool):
        return "true" if key else "false"
    if key is None:
        return "null"
    if isinstance(key, int | float):
        return str(key)
    return key


class JsonYamlLoader(_BASE):  # type: ignore[valid-type,misc]
    """A safe loader without timestamps whose mapping keys are strings."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        # Keys are converted before insertion: 1 and true are one Python key, two JSON keys.
        self.flatten_mapping(node)  # merge keys (<<)
        mapping: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = _key(self.construct_object(key_node, deep=deep))
            if not isinstance(key, str):
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    "found a key that is not a scalar",
                    key_node.start_mark,
                )
            mapping[key] = self.construct_object(value_node, deep=deep)
        return mapping


JsonYamlLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != _TIMESTAMP]
    for first, resolvers in _BASE.yaml_implicit_resolvers.items()
}


def load(body: bytes | str) -> Any:
    """Decode one YAML document; raises yaml.YAMLError on bad syntax."""
    return yaml.load(body, Loader=JsonYamlLoader)  # JsonYamlLoader is a safe loader
