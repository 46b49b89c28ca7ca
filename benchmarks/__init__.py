"""Measured figures of the runbook and its Lab (run each as ``python -m benchmarks.<name>``)."""
