"""Inference engines, one module each. See `base.Engine` for the contract."""
