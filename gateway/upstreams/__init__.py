"""Upstream adaptors: one module per kind of upstream API. See `base.Upstream`."""
