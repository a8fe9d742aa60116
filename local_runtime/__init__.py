"""modelport's local runtime: model catalog, worker processes and inference engines."""
