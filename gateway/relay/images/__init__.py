"""/v1 images surface."""
