"""Console scripts: each module turns flags into a config and runs one component."""
