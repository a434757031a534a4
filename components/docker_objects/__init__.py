"""Docker networks, volumes, images and containers as Pulumi dynamic resources.

The pulumi-docker provider plugin cannot be built here, so these resources talk
to the Docker engine through docker-py. Each one is a ``ResourceProvider`` (the
CRUD code, run by the engine in a separate ``python -m pulumi.dynamic``
process) and a ``Resource`` (what the program declares).

Rules every provider here follows:

- The modules do nothing at import: the provider process imports a
  provider's module by reference when it unpickles it. Every method opens its
  own client (``with engine_api() as api``), closed before it returns.
- ``create`` and ``update`` return every input next to the computed outputs:
  a dynamic resource's state is exactly what they return, and ``diff`` compares
  the old state with the new inputs field by field.
- ``diff`` normalises both sides first (property values come back from the
  engine with ints as floats, dicts in another order) and treats a value not
  yet known during preview as changed.
- ``read`` (``pulumi refresh``) reports the live object. When the object is
  gone it returns ``ReadResult(id_="", outs={})``: the engine takes an empty ID
  as "resource no longer exists" and drops it from the state, so the next
  ``pulumi up`` creates it again. (``outs`` must still be a dict, the SDK's
  servicer adds a key to it.)
- Docker objects have fixed names, so a replacement deletes the old object
  before creating the new one (``delete_before_replace``).

Secrets: dynamic providers do not accept secrets. The engine sends them to the
provider as plain values and, on the way back, marks as secret every output
property (recursively, key by key inside objects) whose input of the same name
held a secret. That is why ``create``/``update``/``read`` echo ``files``,
``envs`` and ``build_args`` back under their own names with the same keys: a
secret file content or environment value passed in stays a secret in the
state. Nothing here derives another output from a secret, and no error message
quotes file contents or the environment.

Type tokens are set explicitly (``pulumi-python:dynamic/docker:<Name>``): the
SDK's default for every dynamic resource would be ``dynamic:Resource``.

One module a kind, plus the shared parts:

- ``client``: ``engine(ref)``, the one way to a Docker engine (local, or a
  ``unix://``, ``tcp://``, ``ssh://`` engine ref).
- ``engine_ref``: engine refs parsed, container locators (``name@<ref>``),
  ``ssh_command`` (our ssh options, shared by the engine relay and the API tunnels).
- ``ssh``: the relay that carries the Docker API of an ssh:// engine.
- ``errors``: ``DockerResourceError``.
- ``props``: property values normalised for diffs, ``is_known``.
- ``provider``: the base provider (``diff``, ``check``) and the type token module.
- ``context``: a build context's digest and tar.
- ``network``, ``volume``, ``image``, ``container``: a provider and a resource
  each (``image`` also holds ``DockerImageCopy``, an image loaded onto another
  engine). Volumes, containers and image copies take an ``engine`` input: the
  engine they live on, "" for the local one.

Pickles: the engine stores each provider pickled *by reference*, as
``<module>.<class>``. Providers pickled before this package existed name
``components.docker_resources``, which re-exports every class under its old
name, so stacks deployed then still refresh, update and destroy; new ones
name the module of their kind here (``components.docker_objects.container``
and so on). Moving or renaming a provider class later needs the same kind of
re-export at the old place.
"""

from components.docker_objects.client import DockerResourceError, engine, engine_api
from components.docker_objects.container import (
    DockerContainer,
    DockerContainerProvider,
    HealthcheckSpec,
    MountSpec,
    PortSpec,
)
from components.docker_objects.context import context_digest, context_files
from components.docker_objects.engine_ref import (
    EngineRef,
    locator,
    parse_engine_ref,
    split_locator,
    ssh_command,
)
from components.docker_objects.image import (
    DockerImage,
    DockerImageCopy,
    DockerImageCopyProvider,
    DockerImageProvider,
    remove_unused_images,
)
from components.docker_objects.network import DockerNetwork, DockerNetworkProvider
from components.docker_objects.volume import DockerVolume, DockerVolumeProvider

__all__ = [
    "DockerContainer",
    "DockerContainerProvider",
    "DockerImage",
    "DockerImageCopy",
    "DockerImageCopyProvider",
    "DockerImageProvider",
    "DockerNetwork",
    "DockerNetworkProvider",
    "DockerResourceError",
    "DockerVolume",
    "DockerVolumeProvider",
    "EngineRef",
    "HealthcheckSpec",
    "MountSpec",
    "PortSpec",
    "context_digest",
    "context_files",
    "engine",
    "engine_api",
    "locator",
    "parse_engine_ref",
    "remove_unused_images",
    "split_locator",
    "ssh_command",
]
