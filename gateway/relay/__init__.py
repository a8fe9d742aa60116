"""The /v1/* relay: one package per API surface, plus the shared dispatch and streaming code."""
