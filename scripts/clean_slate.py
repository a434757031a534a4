"""Remove every Docker object of this project that `make setup` did not make.

CI runs this before `make test`, so that a green CI means a green fresh
machine: a test that relies on an image someone tagged by hand, or on a
container, network or volume an earlier run left behind, fails here as it
would on a new machine. It also removes the Pulumi stacks of this checkout's
local backend (`.state/`) and test stack files left in `stacks/`, since their
Docker objects are gone. What `make setup` makes stays: the base image and the
Dkron image named in `toolchain/versions.env` (and the caches outside Docker).

Without `--yes` it only lists what it would remove.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

import docker
import docker.errors

ROOT = Path(__file__).resolve().parents[1]

# Docker labels every object of this project carries: stacks, tests, benchmarks.
PROJECT_LABELS = ("dkron-iac.project", "dkron-iac.stack", "dkron-iac.test", "dkron-iac.bench")
# Names the tests and benchmarks give objects that carry no label.
PROJECT_NAMES = re.compile(r"^(t-[a-z]+-[0-9a-f]+|t[0-9a-f]{6}-|bench[0-9a-f]{6})")
IMAGE_REPOSITORY = "dkron-iac/"


def setup_images() -> set[str]:
    """The image tags `make setup` makes (from toolchain/versions.env)."""
    found: set[str] = set()
    for line in (ROOT / "toolchain" / "versions.env").read_text().splitlines():
        key, _, value = line.partition("=")
        if key.strip() in ("BASE_IMAGE", "DKRON_IMAGE"):
            found.add(value.strip())
    return found


def _labelled(labels: dict[str, str] | None) -> bool:
    return any(key in PROJECT_LABELS for key in (labels or {}))


def leftovers(client: docker.DockerClient, keep: set[str]) -> dict[str, list[tuple[str, str]]]:
    """kind -> [(id, description)] of the project objects `make setup` did not make."""
    found: dict[str, list[tuple[str, str]]] = {"containers": [], "networks": [], "volumes": [], "images": []}
    for container in client.containers.list(all=True):
        if _labelled(container.labels) or PROJECT_NAMES.match(container.name):
            found["containers"].append((container.id, container.name))
    for network in client.networks.list():
        if network.name in ("bridge", "host", "none"):
            continue
        if _labelled(network.attrs.get("Labels")) or PROJECT_NAMES.match(network.name):
            found["networks"].append((network.id, network.name))
    for volume in client.volumes.list():
        if _labelled(volume.attrs.get("Labels")) or PROJECT_NAMES.match(volume.name):
            found["volumes"].append((volume.name, volume.name))
    for image in client.images.list(all=False):
        tags = set(image.tags)
        if tags & keep:
            # A setup image: extra tags put on it by hand go, the image stays.
            found["images"].extend((tag, tag) for tag in sorted(tags - keep))
        elif _labelled(image.labels) or any(tag.startswith(IMAGE_REPOSITORY) for tag in tags):
            found["images"].append((image.id, ", ".join(sorted(tags)) or image.short_id))
    return found


def stale_stacks() -> list[Path]:
    """This checkout's local Pulumi stacks and leftover test stack files."""
    state = ROOT / ".state" / ".pulumi"
    found = sorted((state / "stacks").rglob("*.json*")) if (state / "stacks").exists() else []
    found += sorted((state / "history").glob("*/*/*")) if (state / "history").exists() else []
    found += sorted((state / "backups").glob("*/*/*")) if (state / "backups").exists() else []
    return found + sorted((ROOT / "stacks").glob("Pulumi.t*.yaml"))


def remove(client: docker.DockerClient, found: dict[str, list[tuple[str, str]]]) -> list[str]:
    """Remove what `leftovers` found, containers first; return what failed."""
    failed: list[str] = []

    def each(kind: str, items: Iterable[tuple[str, str]], action: Callable[[str], object]) -> None:
        for ref, what in items:
            try:
                action(ref)
            except docker.errors.NotFound:
                pass
            except docker.errors.APIError as err:
                failed.append(f"{kind} {what}: {err.explanation or err}")

    each("container", found["containers"], lambda ref: client.containers.get(ref).remove(force=True))
    each("network", found["networks"], lambda ref: client.networks.get(ref).remove())
    each("volume", found["volumes"], lambda ref: client.volumes.get(ref).remove(force=True))
    each("image", found["images"], lambda ref: client.images.remove(ref, force=False, noprune=False))
    return failed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--yes", action="store_true", help="remove them (default: only list them)")
    args = parser.parse_args()
    keep = setup_images()
    client = docker.from_env(version="auto")
    try:
        missing = sorted(tag for tag in keep if not client.images.list(name=tag))
        found = leftovers(client, keep)
        stacks = stale_stacks()
        total = sum(len(items) for items in found.values()) + len(stacks)
        verb = "removing" if args.yes else "would remove"
        for kind, items in found.items():
            for _ref, what in items:
                print(f"{verb} {kind[:-1]}: {what}")
        for path in stacks:
            print(f"{verb} stack file: {path.relative_to(ROOT)}")
        if not args.yes:
            print(f"{total} project object(s) not made by `make setup`; run with --yes to remove them")
            return 0
        failed = remove(client, found)
        for path in stacks:
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
        # Removing an image by ID can leave a tagged child; one more pass catches it.
        if failed:
            failed = remove(client, leftovers(client, keep))
    finally:
        client.close()
    for line in failed:
        print(f"could not remove {line}", file=sys.stderr)
    if missing:
        print(f"note: setup images not present (make setup makes them): {', '.join(missing)}")
    print(f"clean slate: removed {total} project object(s) not made by `make setup`")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
