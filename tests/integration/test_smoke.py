"""The whole chain, end to end, on the smallest cluster.

A real `pulumi up` (Automation API -> the CLI built by setup -> this
project's language host -> the program) builds the node image from
`dockerfiles/` on the local base images, creates the network, a volume and
one container running `dkron agent --server --bootstrap-expect=1`, and the
dynamic-provider resources (the Docker objects, the gossip key, the gate).
"""

from __future__ import annotations

import subprocess

import pytest
from pulumi import automation as auto

from components import naming
from components.dkron_client import DkronClient
from components.docker_objects import engine
from testing.harness import TestStack, eventually


def test_one_node_stack_comes_up_answers_and_goes_away_completely() -> None:
    stack = TestStack([{"name": "solo"}])
    try:
        outputs = stack.up(refresh=False)

        # The dynamic providers ran: the state holds their resources.
        deployment = stack.stack.export_stack().deployment
        assert deployment is not None
        types = {r["type"] for r in deployment["resources"]}
        assert any(t.startswith("pulumi-python:dynamic") for t in types), types

        api = outputs["nodes"]["solo"]["api_url"]
        assert api.startswith("https://127.0.0.1:")
        with DkronClient(api) as client:
            leader = eventually("a leader", client.leader)
            assert leader["Name"] == "solo"
            agent = client.agent()
            assert agent["tags"]["expect"] == "1"
            assert agent["serf"]["encrypted"] == "true"
        assert outputs["leader"] == "solo"

        # Published on loopback only.
        ports = subprocess.run(
            ["docker", "port", stack.container("solo")], capture_output=True, text=True, check=True
        ).stdout
        assert ports.strip().endswith(f"127.0.0.1:{stack.port_base}"), ports

        stack.destroy()
        assert stack.docker_objects() == {"containers": [], "networks": [], "volumes": []}
    finally:
        stack.close()


def test_a_formed_cluster_whose_data_is_all_gone_is_not_silently_rebootstrapped() -> None:
    stack = TestStack([{"name": "solo"}])
    try:
        stack.up(refresh=False)
        with engine() as client:
            client.containers.get(stack.container("solo")).remove(force=True)
            client.volumes.get(naming.volume_name(stack.cluster_name, "solo")).remove(force=True)

        with pytest.raises(auto.CommandError, match="rebootstrap: true"):
            stack.up()
        assert stack.docker_objects()["containers"] == []

        # The explicit switch forms a new cluster.
        stack.configure(lambda c: c.update(rebootstrap=True))
        outputs = stack.up()
        assert outputs["leader"] == "solo"
        assert outputs["bootstrap"]["state"] == "formed"
    finally:
        stack.close()
