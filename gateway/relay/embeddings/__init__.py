"""/v1 embeddings surface."""
