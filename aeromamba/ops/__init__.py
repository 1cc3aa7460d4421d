"""Numerical operators shared by the models and their tests (the reference selective scan)."""
