"""/v1 audio surface."""
