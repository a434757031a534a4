"""How a cluster names its Docker objects: one place, used by the component,
the tests and the benchmarks alike."""

from __future__ import annotations


def container_name(cluster: str, node: str) -> str:
    return f"{cluster}-{node}"


def volume_name(cluster: str, node: str) -> str:
    return f"{cluster}-{node}-data"


def network_name(cluster: str) -> str:
    return f"{cluster}-net"


def image_repository(cluster: str) -> str:
    """The repository of the cluster's node image (base image + dkron binary)."""
    return f"dkron-iac/{cluster}-node"


def image_tag(cluster: str, dkron_version: str) -> str:
    return f"{image_repository(cluster)}:{dkron_version}"


def prometheus_container_name(cluster: str) -> str:
    return f"{cluster}-prometheus"


def prometheus_volume_name(cluster: str) -> str:
    return f"{cluster}-prometheus-data"


def prometheus_image_repository(cluster: str) -> str:
    return f"dkron-iac/{cluster}-prometheus"


def alertmanager_container_name(cluster: str) -> str:
    return f"{cluster}-alertmanager"


def alertmanager_volume_name(cluster: str) -> str:
    return f"{cluster}-alertmanager-data"


def alertmanager_image_repository(cluster: str) -> str:
    return f"dkron-iac/{cluster}-alertmanager"
