"""Benchmarks that print tables (`python -m jaxcorr.benchmarks.<name>`); never run by tests."""
