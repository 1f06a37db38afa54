"""Kubernetes API types: the resource table, validation, defaults and patches."""
