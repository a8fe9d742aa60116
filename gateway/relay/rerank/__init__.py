"""/v1 rerank surface."""
