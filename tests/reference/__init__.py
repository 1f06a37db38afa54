"""Small readable pure-Python references used as oracles for the native (Rust) parts."""
