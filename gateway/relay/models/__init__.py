"""/v1 models surface."""
