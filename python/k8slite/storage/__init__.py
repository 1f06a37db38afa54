"""Durable storage behind the API server: a protocol and its backends."""

from k8slite.storage.base import (
    Event,
    KeyExists,
    KeyNotFound,
    Op,
    RevisionConflict,
    StorageError,
    Store,
    StoreUnavailable,
)
from k8slite.storage.rocksdb import RocksStore

__all__ = [
    "Event",
    "KeyExists",
    "KeyNotFound",
    "Op",
    "RevisionConflict",
    "RocksStore",
    "StorageError",
    "Store",
    "StoreUnavailable",
]
