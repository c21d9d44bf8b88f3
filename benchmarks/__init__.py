"""The benchmarks: each module runs as `python -m benchmarks.<name>` from the repository root
(make bench, bench-job, bench-precision) and imports shared helpers from its siblings."""
