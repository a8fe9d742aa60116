"""Prices, quota reservation and settlement, token counting, and the batched usage writer."""
