"""Scale-out: many gateway processes over one PostgreSQL and one Redis behave as one gateway.

- `pubsub`: every admin write publishes an invalidation on Redis; every process applies the ones
  it did not send (tokens, routes, prices, auto-disabled channels) within milliseconds, instead of
  One API's SYNC_FREQUENCY poll.
- `nodes`: the registry of GPU nodes (`modelport node`) and of the host's runtime process; their
  workers are endpoints of the route table in every process, and drop out when heartbeats stop.
- one process per host runs the local runtime under `uvicorn --workers N`: gateway.runtime_host.host.
- `api`: /api/nodes (heartbeats with a node token; admin views and node launches).
- `heartbeat`: signed heartbeats (time, body hash, replay guard) and worker address checks.
- `launch`: placing a model on a GPU node, for /api/nodes/models and Xinference's /v1/models.
- `secret`: each worker launch's own key, derived from the cluster secret or the host's key.
- `namespace`: the installation's prefix for every Redis key and channel.
- `changes`: the database change log and node records (they work with Redis away).
- `integration`: `build_cluster`, the registry and the bus subscriptions for gateway.app.create_app.
"""
