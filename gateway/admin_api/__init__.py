"""One API-shaped admin API under /api/*: `{success, message, data}` envelopes."""
