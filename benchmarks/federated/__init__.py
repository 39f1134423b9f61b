"""Federated personalization on Flower's simulation engine: `python -m benchmarks.federated`."""
