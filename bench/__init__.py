"""Benchmark harness for the FHIR server: see bench/README.md. Run `python -m bench.run`."""
