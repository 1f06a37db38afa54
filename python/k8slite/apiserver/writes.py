"""What every write carries besides its body: field manager, field validation and warnings.

Field validation walks the decoded object against its schema: unknown fields are dropped,
reported as Warning headers (fieldValidation=Warn, the default) or refused (Strict); a
mistyped value is refused whatever the directive, as upstream's decoder does. The tracker
records the write in managedFields under its manager.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from k8slite._native import dumps
from k8slite.api import apply, errors, fieldvalidation, meta, schemas
from k8slite.api.customresource import custom_of
from k8slite.api.resources import ResourceType
from k8slite.apiserver.http import Request
from k8slite.apiserver.registry import Tracker
from k8slite.component.objects import Obj

# Checks of the final object against the stored one (old is None on create), as upstream's
# validating admission: registered per request by the filters, run by the registry after
# defaulting and validation, before the write is compared and stored (dry runs included).
Admission = Callable[[Obj, Obj | None], None]
_WARNINGS = "k8slite.warnings"
_ADMISSION = "k8slite.admission"
MAX_MANAGER_LENGTH = 128


@dataclass(frozen=True)
class WriteOptions:
    manager: str
    validation: str


def warn(req: Request, text: str) -> None:
    """Queue a warning for the response's Warning header."""
    req.scope.setdefault(_WARNINGS, []).append(text)


def warning_headers(req: Request) -> dict[str, str] | None:
    """The Warning header for queued warnings: `299 - "text"`, comma separated."""
    texts = req.scope.get(_WARNINGS)
    if not texts:
        return None
    quoted = (t.replace("\\", "\\\\").replace('"', '\\"') for t in texts)
    return {"Warning": ", ".join(f'299 - "{t}"' for t in quoted)}


def admit(req: Request, check: Admission) -> None:
    """Run check on the object this request writes, once it is final."""
    req.scope.setdefault(_ADMISSION, []).append(check)


def with_admission(req: Request, track: Tracker | None) -> Tracker | None:
    """The registry's hook for this write: the request's admission checks, then track."""
    checks: list[Admission] = req.scope.get(_ADMISSION) or []
    if not checks:
        return track

    def hook(new: Obj, old: Obj | None) -> None:
        for check in checks:
            check(new, old)
        if track is not None:
            track(new, old)

    return hook


def _options_error(kind: str, field: str, reason: str, message: str) -> errors.ApiError:
    return errors.invalid(
        kind, "", [{"reason": reason, "field": field, "message": message}], "meta.k8s.io"
    )


def write_options(req: Request, options_kind: str, is_apply: bool = False) -> WriteOptions:
    """fieldManager (or the User-Agent's product) and fieldValidation of a write."""
    validation = req.arg("fieldValidation") or "Warn"
    if validation not in fieldvalidation.DIRECTIVES:
        raise _options_error(
            options_kind,
            "fieldValidation",
            "FieldValueNotSupported",
            f'Unsupported value: "{validation}": supported values: "Ignore", "Strict", "Warn"',
        )
    manager = req.arg("fieldManager")
    if manager is None:
        if is_apply:
            raise _options_error(
                options_kind,
                "fieldManager",
                "FieldValueRequired",
                "Required value: is required for apply patch",
            )
        manager = req.headers.get("user-agent", "").split("/", 1)[0][:MAX_MANAGER_LENGTH]
    if len(manager.encode()) > MAX_MANAGER_LENGTH:
        raise _options_error(
            options_kind,
            "fieldManager",
            "FieldValueTooLong",
            f"Too long: may not be more than {MAX_MANAGER_LENGTH} bytes",
        )
    return WriteOptions(manager, validation)


def schema_node(rt: ResourceType) -> schemas.Node | None:
    """The root schema node apply and managedFields walk: a built-in's or a CRD's."""
    root = schemas.root(rt)
    if root is not None:
        return schemas.Node("struct", definition=root)
    custom = custom_of(rt)
    return custom.apply_node if custom is not None else None


def tracker(rt: ResourceType, opts: WriteOptions, subresource: str | None) -> Tracker | None:
    """Records an Update by opts.manager in managedFields (kinds with a schema only)."""
    node = schema_node(rt)
    if node is None:
        return None
    who = apply.Manager(opts.manager, "Update", subresource or "")

    def track(new: Obj, old: Obj | None) -> None:
        apply.record_update(new, old, who, rt.api_version, node)

    return track


def validate_body(req: Request, rt: ResourceType, obj: Obj, opts: WriteOptions) -> None:
    """Field validation of a create or update body: 400 like upstream's decoder."""
    defn = schemas.root(rt)
    if defn is None:
        _check_custom(req, rt, obj, opts, errors.bad_request)
        return
    found = fieldvalidation.check(obj, defn)
    prefix = f'{rt.kind} in version "{rt.version}" cannot be handled as a {rt.kind}: '
    if found.type_error:
        raise errors.bad_request(prefix + found.type_error)
    if found.unknown:
        if opts.validation == "Strict":
            raise errors.bad_request(prefix + found.strict_message())
        if opts.validation == "Warn":
            for path in found.unknown:
                warn(req, f'unknown field "{path}"')


def validate_patched(
    req: Request, rt: ResourceType, obj: Obj, opts: WriteOptions, shown: Callable[[], str]
) -> None:
    """Field validation of a patched object: 422 on the patch (shown renders it)."""
    defn = schemas.root(rt)
    if defn is None:
        _check_custom(req, rt, obj, opts, errors.bad_request)
        return
    found = fieldvalidation.check(obj, defn)

    if found.type_error:
        raise invalid_patch(shown(), found.type_error)
    if found.unknown:
        if opts.validation == "Strict":
            raise invalid_patch(shown(), found.strict_message())
        if opts.validation == "Warn":
            for path in found.unknown:
                warn(req, f'unknown field "{path}"')


def invalid_patch(shown: str, message: str) -> errors.ApiError:
    """422 for a patch whose result does not decode, as upstream's patcher answers."""
    return errors.invalid(
        "",
        "",
        [
            {
                "reason": "FieldValueInvalid",
                "field": "patch",
                "message": f'Invalid value: "{shown}": {message}',
            }
        ],
    )


def _check_custom(
    req: Request,
    rt: ResourceType,
    obj: Obj,
    opts: WriteOptions,
    refuse: Callable[[str], errors.ApiError],
) -> None:
    """Unknown fields of a custom resource: those its structural schema prunes (here, as
    the strategy would anyway)."""
    custom = custom_of(rt)
    if custom is None or custom.schema is None or opts.validation == "Ignore":
        return
    unknown = custom.schema.prune(obj)
    if not unknown:
        return
    if opts.validation == "Strict":
        found = fieldvalidation.Findings(unknown=unknown)
        prefix = f'{rt.kind} in version "{rt.version}" cannot be handled as a {rt.kind}: '
        raise refuse(prefix + found.strict_message())
    for path in unknown:
        warn(req, f'unknown field "{path}"')


def check_apply_config(rt: ResourceType, config: Obj, namespace: str | None, name: str) -> None:
    """An applied configuration must type against the schema (upstream answers 500)."""
    defn = schemas.root(rt)
    if defn is None:
        custom = custom_of(rt)
        # A custom resource's configuration: fields its structural schema would prune.
        unknown = custom.schema.prune(meta.clone(config)) if custom and custom.schema else []
        if unknown:
            raise apply_failed(rt, namespace, name, f".{unknown[0]}: field not declared in schema")
        return
    found = fieldvalidation.check(config, defn, prune=False)
    if found.out_of_range and found.type_error:
        # Not a typing problem of the configuration but a number no field can hold: refused
        # as a patch whose result does not decode.
        raise invalid_patch(dumps(config).decode(), found.type_error)
    problem = None
    if found.unknown:
        problem = f".{found.unknown[0]}: field not declared in schema"
    elif found.type_error and found.type_path:
        problem = f".{found.type_path}: {found.type_error.split(': ', 1)[1]}"
    if problem is not None:
        raise apply_failed(rt, namespace, name, problem)


def apply_failed(
    rt: ResourceType, namespace: str | None, name: str, problem: str
) -> errors.ApiError:
    gvk = f"{rt.group_version if rt.group else '/' + rt.version}, Kind={rt.kind}"
    return errors.ApiError(
        500, "", f"failed to create typed patch object ({namespace or ''}/{name}; {gvk}): {problem}"
    )
