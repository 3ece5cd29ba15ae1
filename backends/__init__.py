"""One module per framework; installed as `lmbench.backends` (see lmbench/backend.py)."""
