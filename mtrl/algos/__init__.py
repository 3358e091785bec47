"""Training algorithms: pure losses plus a small update step each."""
