"""Field validation helpers worded like upstream's field.ErrorList, and object metadata checks."""

from __future__ import annotations

import re
from typing import Any

from k8slite.api import errors
from k8slite.api.quantity import QuantityError, parse_quantity

DNS1123_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
DNS1123_SUBDOMAIN = DNS1123_LABEL + r"(\." + DNS1123_LABEL + r")*"
_LABEL_RE = re.compile(DNS1123_LABEL + r"\Z")
_SUBDOMAIN_RE = re.compile(DNS1123_SUBDOMAIN + r"\Z")
_QUALIFIED_NAME = r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_QUALIFIED_RE = re.compile(_QUALIFIED_NAME + r"\Z")
_LABEL_VALUE = r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?"
_LABEL_VALUE_RE = re.compile(_LABEL_VALUE + r"\Z")
_ENV_NAME_RE = re.compile(r"[-._a-zA-Z][-._a-zA-Z0-9]*\Z")
_CONFIG_KEY_RE = re.compile(r"[-._a-zA-Z0-9]+\Z")
_IANA_SVC_RE = re.compile(r"[-a-z0-9]+\Z")

DNS1123_LABEL_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
    "and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', "
    f"regex used for validation is '{DNS1123_LABEL}')"
)
DNS1123_SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' "
    "or '.', and must start and end with an alphanumeric character (e.g. 'example.com', "
    f"regex used for validation is '{DNS1123_SUBDOMAIN}')"
)
QUALIFIED_NAME_MSG = (
    "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and "
    "end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', "
    f"regex used for validation is '{_QUALIFIED_NAME}')"
)
LABEL_VALUE_MSG = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or "
    "'.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or "
    f"'my_value',  or '12345', regex used for validation is '{_LABEL_VALUE}')"
)
TOTAL_ANNOTATION_SIZE = 256 * 1024


def go_repr(value: Any) -> str:
    """Render a value the way upstream's messages quote it."""
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class FieldErrors:
    """Collects per-field causes; raise_if_any turns them into a 422 Invalid Status."""

    def __init__(self) -> None:
        self.causes: list[dict[str, str]] = []

    def __bool__(self) -> bool:
        return bool(self.causes)

    def _add(self, reason: str, path: str, message: str) -> None:
        self.causes.append({"reason": reason, "message": message, "field": path})

    def required(self, path: str, detail: str = "") -> None:
        self._add("FieldValueRequired", path, "Required value" + (f": {detail}" if detail else ""))

    def invalid(self, path: str, value: Any, detail: str) -> None:
        self._add("FieldValueInvalid", path, f"Invalid value: {go_repr(value)}: {detail}")

    def not_supported(self, path: str, value: Any, valid: list[str]) -> None:
        quoted = ", ".join(f'"{v}"' for v in valid)
        self._add(
            "FieldValueNotSupported",
            path,
            f"Unsupported value: {go_repr(value)}: supported values: {quoted}",
        )

    def duplicate(self, path: str, value: Any) -> None:
        self._add("FieldValueDuplicate", path, f"Duplicate value: {go_repr(value)}")

    def duplicate_text(self, path: str, shown: str) -> None:
        """A duplicate whose value upstream prints in Go's own form (list-map keys)."""
        self._add("FieldValueDuplicate", path, f"Duplicate value: {shown}")

    def too_many(self, path: str, count: int, limit: int) -> None:
        self._add("FieldValueTooMany", path, f"Too many: {count}: must have at most {limit} items")

    def not_found(self, path: str, value: Any) -> None:
        self._add("FieldValueNotFound", path, f"Not found: {go_repr(value)}")

    def forbidden(self, path: str, detail: str) -> None:
        self._add("FieldValueForbidden", path, f"Forbidden: {detail}")

    def too_long(self, path: str, limit: int) -> None:
        self._add("FieldValueTooLong", path, f"Too long: may not be more than {limit} bytes")

    def immutable(self, path: str, value: Any) -> None:
        self.invalid(path, value, "field is immutable")

    def raise_if_any(self, kind: str, name: str, group: str = "") -> None:
        if self.causes:
            raise errors.invalid(kind, name, self.causes, group)


# ------------------------------------------------------------------ name checks


def check_dns_label(errs: FieldErrors, path: str, value: str) -> None:
    if len(value) > 63:
        errs.invalid(path, value, "must be no more than 63 characters")
    if not _LABEL_RE.match(value):
        errs.invalid(path, value, DNS1123_LABEL_MSG)


def check_dns_subdomain(errs: FieldErrors, path: str, value: str) -> None:
    if len(value) > 253:
        errs.invalid(path, value, "must be no more than 253 characters")
    if not _SUBDOMAIN_RE.match(value):
        errs.invalid(path, value, DNS1123_SUBDOMAIN_MSG)


def qualified_name_problems(value: str) -> list[str]:
    """Problems of a label or annotation key (optional DNS prefix, then a name part)."""
    parts = value.split("/")
    if len(parts) > 2:
        return [
            "a qualified name "
            + QUALIFIED_NAME_MSG.split("name part ", 1)[1]
            + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
        ]
    name = parts[-1]
    out = []
    if len(parts) == 2:
        prefix = parts[0]
        if not prefix:
            out.append("prefix part must be non-empty")
        else:
            if len(prefix) > 253:
                out.append("prefix part must be no more than 253 characters")
            if not _SUBDOMAIN_RE.match(prefix):
                out.append("prefix part " + DNS1123_SUBDOMAIN_MSG)
    if not name:
        out.append("name part must be non-empty")
    else:
        if len(name) > 63:
            out.append("name part must be no more than 63 characters")
        if not _QUALIFIED_RE.match(name):
            out.append(QUALIFIED_NAME_MSG)
    return out


def check_labels(errs: FieldErrors, path: str, labels: Any) -> None:
    if labels is None:
        return
    if not isinstance(labels, dict):
        errs.invalid(path, labels, "must be a map of string keys to string values")
        return
    for key, value in labels.items():
        for problem in qualified_name_problems(key):
            errs.invalid(path, key, problem)
        if not isinstance(value, str):
            errs.invalid(f"{path}[{key}]", value, "must be a string")
            continue
        if len(value) > 63:
            errs.invalid(path, value, "must be no more than 63 characters")
        if not _LABEL_VALUE_RE.match(value):
            errs.invalid(path, value, LABEL_VALUE_MSG)


def check_annotations(errs: FieldErrors, path: str, annotations: Any) -> None:
    if annotations is None:
        return
    if not isinstance(annotations, dict):
        errs.invalid(path, annotations, "must be a map of string keys to string values")
        return
    total = 0
    for key, value in annotations.items():
        for problem in qualified_name_problems(key):
            errs.invalid(path, key, problem)
        if not isinstance(value, str):
            errs.invalid(f"{path}[{key}]", value, "must be a string")
            continue
        total += len(key) + len(value)
    if total > TOTAL_ANNOTATION_SIZE:
        errs.too_long(path, TOTAL_ANNOTATION_SIZE)


def check_env_name(errs: FieldErrors, path: str, value: str) -> None:
    if not _ENV_NAME_RE.match(value or ""):
        errs.invalid(
            path,
            value,
            "a valid environment variable name must consist of "
            "alphabetic characters, digits, '_', '-', or '.', and must not start with "
            "a digit (e.g. 'my.env-name',  or 'MY_ENV.NAME',  or 'MyEnvName1', regex "
            "used for validation is '[-._a-zA-Z][-._a-zA-Z0-9]*')",
        )


def check_config_key(errs: FieldErrors, path: str, key: str) -> None:
    if len(key) > 253:
        errs.invalid(path, key, "must be no more than 253 characters")
    if not _CONFIG_KEY_RE.match(key) or key in (".", ".."):
        errs.invalid(
            path,
            key,
            "a valid config key must consist of alphanumeric characters, "
            "'-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex "
            "used for validation is '[-._a-zA-Z0-9]+')",
        )


def check_port_number(errs: FieldErrors, path: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 65535:
        errs.invalid(path, value, "must be between 1 and 65535, inclusive")


def check_port_name(errs: FieldErrors, path: str, value: str) -> None:
    """IANA_SVC_NAME: up to 15 lowercase alphanumerics and '-', at least one letter."""
    if len(value) > 15:
        errs.invalid(path, value, "must be no more than 15 characters")
    if not _IANA_SVC_RE.match(value):
        errs.invalid(
            path, value, "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)"
        )
    elif "--" in value:
        errs.invalid(path, value, "must not contain consecutive hyphens")
    elif value.startswith("-") or value.endswith("-"):
        errs.invalid(path, value, "must not begin or end with a hyphen")
    if not any(c.isalpha() for c in value):
        errs.invalid(path, value, "must contain at least one letter (a-z)")


def check_int_or_port_name(errs: FieldErrors, path: str, value: Any) -> None:
    if isinstance(value, str):
        check_port_name(errs, path, value)
    else:
        check_port_number(errs, path, value)


def check_quantity(errs: FieldErrors, path: str, value: Any, non_negative: bool = True) -> None:
    try:
        q = parse_quantity(value)
    except QuantityError as e:
        errs.invalid(path, value, str(e))
        return
    if non_negative and q < 0:
        errs.invalid(path, value, "must be greater than or equal to 0")


def check_non_negative(errs: FieldErrors, path: str, value: Any) -> None:
    if value is None:
        return
    if not isinstance(value, int) or isinstance(value, bool):
        errs.invalid(path, value, "must be an integer")
    elif value < 0:
        errs.invalid(path, value, "must be greater than or equal to 0")


def check_object_meta(
    errs: FieldErrors, meta: dict[str, Any], namespaced: bool, name_check: str = "subdomain"
) -> None:
    """Name (or generateName), namespace, labels and annotations of any object."""
    name = meta.get("name")
    if not name:
        errs.required("metadata.name", "name or generateName is required")
    elif not isinstance(name, str):
        errs.invalid("metadata.name", name, "must be a string")
    elif name_check == "label":
        check_dns_label(errs, "metadata.name", name)
    elif name_check == "path":
        check_path_segment_name(errs, "metadata.name", name)
    else:
        check_dns_subdomain(errs, "metadata.name", name)
    ns = meta.get("namespace")
    if namespaced and not ns:
        errs.required("metadata.namespace")
    if not namespaced and ns:
        errs.forbidden("metadata.namespace", "not allowed on this type")
    check_labels(errs, "metadata.labels", meta.get("labels"))
    check_annotations(errs, "metadata.annotations", meta.get("annotations"))
    finalizers = meta.get("finalizers")
    if finalizers is not None:
        if not isinstance(finalizers, list) or not all(isinstance(f, str) for f in finalizers):
            errs.invalid("metadata.finalizers", finalizers, "must be a list of strings")
        else:
            for i, f in enumerate(finalizers):
                for problem in qualified_name_problems(f):
                    errs.invalid(f"metadata.finalizers[{i}]", f, problem)
    owners = meta.get("ownerReferences")
    if owners is not None:
        check_owner_references(errs, owners)


def check_path_segment_name(errs: FieldErrors, path: str, value: str) -> None:
    if value in (".", ".."):
        errs.invalid(path, value, f'may not be "{value}"')
    for bad in ("/", "%"):
        if bad in value:
            errs.invalid(path, value, f"may not contain '{bad}'")


def check_owner_references(errs: FieldErrors, owners: Any) -> None:
    if not isinstance(owners, list):
        errs.invalid("metadata.ownerReferences", owners, "must be a list")
        return
    controllers = 0
    for i, ref in enumerate(owners):
        path = f"metadata.ownerReferences[{i}]"
        if not isinstance(ref, dict):
            errs.invalid(path, ref, "must be an object")
            continue
        for field in ("apiVersion", "kind", "name", "uid"):
            if not ref.get(field):
                errs.required(f"{path}.{field}")
        if ref.get("controller"):
            controllers += 1
    if controllers > 1:
        errs.invalid(
            "metadata.ownerReferences", "", "Only one reference can have Controller set to true"
        )


def json_type(value: Any) -> str:
    """The JSON type name upstream's validator reports for a value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"
