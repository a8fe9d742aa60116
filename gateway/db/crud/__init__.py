"""All writes go through these small keyword-only functions (one module per entity)."""
