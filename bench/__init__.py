"""On-demand benchmarks for issue 8: planning cost, API requests and bytes per step, throughput
and memory, each next to the incumbents' GET + full-object PUT call pattern measured in the same
run. ``uv run python -m bench --help``; never run as a timed test.
"""
