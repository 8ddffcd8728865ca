"""The pytest-benchmark suites (not shipped in the package): `pytest benchmarks/suites` (CI: test_smoke.py)."""
