"""The metrics behind ``metrics.py``, one module per metric family (disentanglement_lib's
layout); ``metrics.py`` re-exports the public functions."""
