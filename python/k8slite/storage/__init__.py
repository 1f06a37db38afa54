"""Durable storage behind the API server: a protocol and its backends."""

from k8slite.storage.base import Event, KeyExists, KeyNotFound, Op, RevisionConflict, Store

__all__ = ["Event", "KeyExists", "KeyNotFound", "Op", "RevisionConflict", "Store"]
