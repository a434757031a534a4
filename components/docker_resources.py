"""The Docker resources' old home, kept so stacks deployed before
``components/docker_objects/`` existed still refresh, update and destroy.

Their state holds every Docker provider pickled by reference as
``components.docker_resources.<Provider>``; unpickling imports this module
and looks the class up here. Do not remove a name from this module while such
a stack may exist. New code imports from ``components.docker_objects``.
"""

from components.docker_objects import *  # noqa: F403 - every name the package exports
from components.docker_objects import __all__ as _PACKAGE_NAMES

# The old name of the client factory: a client the caller must close. Use `engine()`.
from components.docker_objects.client import _connect as docker_client

__all__ = [*_PACKAGE_NAMES, "docker_client"]
