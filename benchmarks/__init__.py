"""Benchmarks: scripts that print tables measured in one run (`python -m benchmarks.<name>`).

They are not tests; their numbers are recorded in benchmarks/README.md with the machine."""
