"""/v1 chat surface."""
