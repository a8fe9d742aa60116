"""`modelport node`: the GPU node agent's command (gateway.runtime_host.node).

Registered by gateway.cli next to the runtime's commands (local_runtime.cli); it lives here
because a node speaks the gateway's heartbeat protocol, which the runtime library does not know.

No `from __future__ import annotations`: typer reads the annotations at runtime.
"""

from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    @app.command()
    def node(
        gateway: Annotated[
            str, typer.Option("--gateway", envvar="MODELPORT_GATEWAY", help="the gateway's URL")
        ],
        node_token_file: Annotated[
            Path | None,
            typer.Option(
                "--node-token-file",
                help="a file holding the node token (else MODELPORT_NODE_TOKEN; never a flag: "
                "`ps` shows every process's arguments)",
            ),
        ] = None,
        node_id: Annotated[
            str | None, typer.Option("--node-id", envvar="MODELPORT_NODE_ID", help="default: host")
        ] = None,
        advertise_host: Annotated[
            str | None,
            typer.Option(
                "--advertise-host",
                envvar="MODELPORT_ADVERTISE_HOST",
                help="host or IP the gateway reaches this node's workers on",
            ),
        ] = None,
        bind_host: Annotated[
            str, typer.Option("--bind-host", help="address workers listen on")
        ] = "0.0.0.0",
        home: Annotated[
            Path | None, typer.Option("--home", envvar="MODELPORT_HOME", help="state and models")
        ] = None,
    ) -> None:
        """Run this machine's GPUs for a gateway: launch what it places here, heartbeat workers."""
        from gateway.runtime_host.node import NodeAgent, read_token, run_node

        agent = NodeAgent(
            gateway=gateway,
            token=read_token(node_token_file),
            home=(home or Path("~/.modelport")).expanduser().resolve(),
            node_id=node_id,
            advertise_host=advertise_host,
            bind_host=bind_host,
        )
        typer.echo(f"node {agent.node_id} -> {agent.gateway}", err=True)
        run_node(agent)
