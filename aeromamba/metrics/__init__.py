"""Quality metrics: LSD (`lsd`), ViSQOL (`visqol`) and PAQM (`paqm`), one module each.

All take (estimate/test, reference) in that order; see each module for shapes and units.
"""
