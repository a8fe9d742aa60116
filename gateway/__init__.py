"""modelport's gateway: the OpenAI-compatible relay, admin API, tokens, billing and exports."""

__version__ = "0.1.0"
