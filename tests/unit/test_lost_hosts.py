"""What the program says about hosts whose engine does not answer (`components.lost_hosts`)."""

from __future__ import annotations

from typing import Any

import pytest
from pulumi.dynamic import ReadResult

from components.docker_objects.errors import EngineUnreachable
from components.docker_objects.provider import (
    DockerProvider,
    dropped_when_unreachable,
    read_as_recorded_when_unreachable,
)
from components.lost_hosts import HostRecord, docker_command, host_lines, recorded_hosts

SSH = "ssh://root@10.0.0.13?identity=/k&known_hosts=/kh"
PREVIOUS = {
    "n1": {"host": "h1", "engine": "ssh://root@10.0.0.11", "address": "10.0.0.11"},
    "n3": {"host": "h3", "engine": SSH, "address": "10.0.0.13"},
    "n4": {"host": "h3", "engine": SSH, "address": "10.0.0.13"},
}


def test_hosts_are_read_from_the_last_updates_nodes() -> None:
    assert recorded_hosts(PREVIOUS) == {
        "h1": HostRecord("ssh://root@10.0.0.11", "10.0.0.11", ("n1",)),
        "h3": HostRecord(SSH, "10.0.0.13", ("n3", "n4")),
    }
    assert recorded_hosts({"n1": {"container": "c"}}) == {}  # one engine: no hosts


def test_a_lost_host_removed_from_the_config_says_what_is_dropped_and_how_to_clean_it() -> None:
    hosts = recorded_hosts(PREVIOUS)
    lines = host_lines(
        "dkron-lab3", hosts, {"h3": "ssh: connect refused"}, {"h1": {}, "h4": {}}, {"n1": "h1", "n3": "h4"}
    )
    assert lines == [
        "host h3 (10.0.0.13) does not answer (ssh: connect refused): n3 created on h4; n4 removed from the"
        " cluster. Their containers (dkron-lab3-n3, dkron-lab3-n4) and volumes (dkron-lab3-n3-data,"
        " dkron-lab3-n4-data) on h3 are dropped from the state, not deleted; if h3 ever comes back, clean it:"
        " docker -H ssh://root@10.0.0.13 rm -f dkron-lab3-n3 dkron-lab3-n4"
        " && docker -H ssh://root@10.0.0.13 volume rm dkron-lab3-n3-data dkron-lab3-n4-data"
    ]


def test_nodes_on_a_declared_host_that_does_not_answer_are_kept() -> None:
    hosts = recorded_hosts(PREVIOUS)
    placement = {"n1": "h1", "n3": "h3", "n4": "h3"}
    [line] = host_lines("c", hosts, {"h3": "timed out"}, {"h1": {}, "h3": {}}, placement)
    assert line.startswith("host h3 (10.0.0.13) does not answer (timed out): n3, n4 kept as recorded")
    assert "dropped" not in line
    assert host_lines("c", hosts, {}, {"h1": {}, "h3": {}}, placement) == []


def test_the_docker_command_drops_the_ssh_options() -> None:
    assert docker_command(SSH) == "docker -H ssh://root@10.0.0.13"


class _Gone(DockerProvider):
    """A provider whose engine never answers."""

    @read_as_recorded_when_unreachable
    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        raise EngineUnreachable(
            "cannot reach the Docker engine at x: ssh: connect to host x port 22: refused"
        )

    @dropped_when_unreachable
    def delete(self, id_: str, props: dict[str, Any]) -> None:
        raise EngineUnreachable(
            "cannot reach the Docker engine at x: ssh: connect to host x port 22: refused"
        )


def test_an_object_on_a_host_that_does_not_answer_reads_as_recorded_and_is_dropped(
    capsys: pytest.CaptureFixture[str],
) -> None:
    props = {"name": "c-n3", "engine": SSH, "labels": {"a": "b"}}
    read = _Gone().read("id3", props)
    assert (read.id, read.outs, read.inputs) == ("id3", props, None)  # inputs None: the recorded ones stay
    _Gone().delete("id3", props)
    assert "c-n3: dropped from the state and left where it is (cannot reach" in capsys.readouterr().err


def test_the_local_engine_is_never_excused() -> None:
    with pytest.raises(EngineUnreachable):
        _Gone().read("id", {"name": "c"})
    with pytest.raises(EngineUnreachable):
        _Gone().delete("id", {"name": "c", "engine": ""})
