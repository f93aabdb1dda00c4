"""Side-by-side serving benchmark: our service vs naive BentoML, MLServer, PyTriton and the ceilings.

Run ``.venv/bin/python -m bench`` (see ``bench/README.md`` and ``python -m bench --help``).
"""
