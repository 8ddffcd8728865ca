"""edgebert.benchmarks: pytest-benchmark suites and the `edgebert bench` harness."""
