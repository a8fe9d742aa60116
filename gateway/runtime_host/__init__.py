"""The composition layer: the only code that knows both the gateway and the local runtime.

`local_runtime` is a library (its supervisor has its own settings, a launch store and a
replicas-changed callback: local_runtime.supervisor.ports); the gateway routes to endpoints.
This package builds the runtime for a gateway app and bridges the two:

- `adapters`: RuntimeSettings from the gateway's Settings, the launch store over the database,
  replicas -> endpoints of the route table, LocalModel -> ServedModel;
- `integration`: `build_runtime`, the runtime for the services object, its start, its routers;
- `front`: `LocalRuntime`, what every caller holds (`Services.runtime`): the supervisor in the
  process that runs it, a proxy to that process in the others;
- `api`: the Xinference-shaped model API and /api/runtime (the gateway's auth and envelope);
- `host`: one runtime per host under `uvicorn --workers N` (the lock, the owner's heartbeat, the
  others' proxy);
- `node`, `cli`: `modelport node`, a supervisor on a GPU machine heartbeating to a gateway.

It sits under `gateway/` (not a fourth top-level package) because gateway.app is already the
composition root that loads it; the import-direction test treats the folder like gateway/app.py.
"""
