"""Slow fault-injection tests (run with -m faults)."""
