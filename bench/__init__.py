"""Performance benchmarks of erosion-bench (issue 7): `python -m bench.run [--quick] [--only NAME]`.

Each module measures one area and returns a JSON-serialisable section plus target lines; ``run``
collects them into ``bench/results.json`` and ``bench/results.md`` (see bench/README.md).
"""
