"""The cluster's subnet and node addresses stay put once deployed."""

import ipaddress
from typing import Any

import pytest

from components.addressing import (
    SUBNET_POOL,
    AddressConflict,
    assign_addresses,
    choose_subnet,
    network_layout,
    recorded_subnet,
)
from components.spec import ClusterSpec, load_cluster_spec

NET = ipaddress.IPv4Network("172.24.5.0/24")
DOCKER_DEFAULTS = {"bridge": ["172.17.0.0/16"], "host": [], "none": []}


def spec(*nodes: dict[str, Any], subnet: str | None = None) -> ClusterSpec:
    raw: dict[str, Any] = {"name": "c", "nodes": list(nodes)}
    if subnet is not None:
        raw["network"] = {"subnet": subnet}
    return load_cluster_spec("unit", raw)


def at(host: int) -> str:
    return str(NET.network_address + host)


def recorded(**addresses: int) -> dict[str, dict[str, str]]:
    return {name: {"address": at(host)} for name, host in addresses.items()}


# --- subnet ------------------------------------------------------------------------


def test_a_new_stack_gets_a_free_24_from_the_pool() -> None:
    chosen = choose_subnet("unit", spec({"name": "a"}), None, DOCKER_DEFAULTS)

    assert chosen.prefixlen == 24
    assert chosen.subnet_of(SUBNET_POOL)


def test_the_free_subnet_skips_every_subnet_other_networks_use() -> None:
    first = choose_subnet("unit", spec({"name": "a"}), None, DOCKER_DEFAULTS)
    # Another network took it, and a /16 covers the one after.
    taken = {**DOCKER_DEFAULTS, "other": [str(first)], "wide": [str(first.supernet(new_prefix=16))]}

    chosen = choose_subnet("unit", spec({"name": "a"}), None, taken)

    assert not chosen.overlaps(first.supernet(new_prefix=16))


def test_other_clusters_start_looking_elsewhere_in_the_pool() -> None:
    picks = {
        choose_subnet("unit", load_cluster_spec("unit", {"name": name, "nodes": [{"name": "a"}]}), None, {})
        for name in ("alpha", "beta", "gamma", "delta")
    }
    assert len(picks) == 4


def test_the_recorded_subnet_is_kept_whatever_docker_has_now() -> None:
    chosen = choose_subnet("unit", spec({"name": "a"}), "172.26.1.0/24", {"c-net": ["172.26.1.0/24"]})

    assert chosen == ipaddress.IPv4Network("172.26.1.0/24")


def test_the_existing_network_of_this_cluster_is_adopted() -> None:
    chosen = choose_subnet("unit", spec({"name": "a"}), None, {**DOCKER_DEFAULTS, "c-net": ["172.27.3.0/24"]})

    assert chosen == ipaddress.IPv4Network("172.27.3.0/24")


def test_a_configured_subnet_is_used_as_given() -> None:
    chosen = choose_subnet("unit", spec({"name": "a"}, subnet="10.9.0.0/24"), None, DOCKER_DEFAULTS)

    assert chosen == ipaddress.IPv4Network("10.9.0.0/24")


def test_a_configured_subnet_overlapping_another_network_is_refused() -> None:
    with pytest.raises(AddressConflict) as caught:
        choose_subnet("unit", spec({"name": "a"}, subnet="172.17.4.0/24"), None, DOCKER_DEFAULTS)

    assert str(caught.value) == (
        "stack 'unit': cluster.network.subnet = '172.17.4.0/24': overlaps Docker network 'bridge'"
        " (172.17.0.0/16); choose a subnet no other Docker network uses"
    )


def test_changing_the_subnet_of_a_deployed_cluster_is_refused() -> None:
    with pytest.raises(AddressConflict) as caught:
        choose_subnet("unit", spec({"name": "a"}, subnet="10.9.0.0/24"), "172.26.1.0/24", {})

    message = str(caught.value)
    assert message.startswith("stack 'unit': cluster.network.subnet = '10.9.0.0/24': the cluster runs on")
    assert "Set it back to '172.26.1.0/24' or remove the setting" in message


def test_a_stack_deployed_before_fixed_addresses_is_refused_with_what_to_do() -> None:
    with pytest.raises(AddressConflict) as caught:
        choose_subnet("unit", spec({"name": "a"}), None, DOCKER_DEFAULTS, deployed=True)

    message = str(caught.value)
    assert message.startswith("stack 'unit': cluster.network: the stack was deployed before nodes had fixed")
    assert "Destroy the stack (`make destroy`) and deploy it again" in message


def test_no_free_subnet_left_names_the_setting() -> None:
    with pytest.raises(AddressConflict, match=r"set cluster.network.subnet to a free IPv4 subnet"):
        choose_subnet("unit", spec({"name": "a"}), None, {"all": [str(SUBNET_POOL)]})


def test_the_recorded_subnet_is_read_from_the_network_output() -> None:
    assert recorded_subnet({"name": "c-net", "subnet": "172.26.1.0/24"}) == "172.26.1.0/24"
    assert recorded_subnet(None) is None
    assert recorded_subnet({}) is None


def test_docker_hands_out_addresses_only_from_the_upper_half() -> None:
    assert network_layout(NET) == {
        "subnet": "172.24.5.0/24",
        "gateway": "172.24.5.1",
        "ip_range": "172.24.5.128/25",
    }


# --- node addresses ------------------------------------------------------------------


def test_new_nodes_get_addresses_from_the_tenth_on_in_config_order() -> None:
    s = spec({"name": "a"}, {"name": "b"}, {"name": "c"})

    assert assign_addresses(s, NET, {}) == {"a": at(10), "b": at(11), "c": at(12)}


def test_nodes_keep_their_addresses_when_another_is_removed() -> None:
    s = spec({"name": "b"}, {"name": "c"}, {"name": "d"})

    # a's address is not handed to d in the update that removes a.
    assert assign_addresses(s, NET, recorded(a=10, b=11, c=12)) == {"b": at(11), "c": at(12), "d": at(13)}


def test_a_configured_address_wins_and_the_node_that_had_it_moves() -> None:
    s = spec({"name": "a"}, {"name": "b", "ipv4_address": at(10)}, {"name": "c"}, subnet=str(NET))

    assert assign_addresses(s, NET, recorded(a=10, b=11, c=12)) == {"a": at(13), "b": at(10), "c": at(12)}


def test_a_recorded_address_outside_the_node_range_is_not_kept() -> None:
    s = spec({"name": "a"})

    assert assign_addresses(s, NET, recorded(a=200)) == {"a": at(10)}


def test_recorded_addresses_are_reused_only_when_nothing_else_is_left() -> None:
    small = ipaddress.IPv4Network("172.24.5.0/26")  # node range .2 - .31: 30 addresses
    s = spec(*({"name": f"n{i}"} for i in range(29)))

    one_gone = assign_addresses(s, small, {"old": {"address": "172.24.5.2"}})
    two_gone = assign_addresses(
        s, small, {"old": {"address": "172.24.5.2"}, "older": {"address": "172.24.5.3"}}
    )

    assert "172.24.5.2" not in one_gone.values()  # the 29 others were enough
    assert len(set(two_gone.values())) == 29
    assert two_gone["n28"] == "172.24.5.2"  # 28 fresh ones, then the first recorded one
