"""The API server: REST, watch, discovery and serving over HTTPS."""
