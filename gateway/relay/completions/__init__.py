"""/v1 completions surface."""
