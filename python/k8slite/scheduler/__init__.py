"""The scheduler: queue, node cache and the native filter and score kernel."""
