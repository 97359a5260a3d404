"""The data internals behind ``datasets.py``: factor grids (ground_truth), the readers of
the published files (files), the raw uint8 caches of slow sources (cache) and the
procedural stand-ins (standins)."""
