"""Channels: the service every surface writes through (service), probing a channel with the API
its model's type calls (probe), turning channels into route-table endpoints (routes), provider
balances (balance), and auto-disable with periodic re-tests (monitor)."""
