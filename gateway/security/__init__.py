"""Guards for what the gateway does on a caller's behalf (fetching caller-supplied URLs)."""
