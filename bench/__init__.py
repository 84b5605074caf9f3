"""On-demand benchmarks and long fault runs: `./dev bench NAME` runs `python -m bench.NAME`.

Never part of the test suite: each one starts its own embedded store and server processes,
prints its figures and the machine it ran on, and says which targets it met.
"""
