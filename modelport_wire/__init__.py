"""The OpenAI wire format, shared by the gateway, the worker and the litellm adaptor.

A package of its own so that `local_runtime` (a library that never imports `gateway`) and
`gateway` speak it from one definition: `openai` holds the error body, the status table and the
SSE framing; `errors` the domain error base every surface maps at its edge.
"""
