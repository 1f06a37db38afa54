"""Conformance with the real Kubernetes clients: kubectl v1.35 and the official Python client."""
