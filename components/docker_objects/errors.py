"""The errors every Docker helper raises."""


class DockerResourceError(Exception):
    """A Docker operation failed; the message says which object and why."""


class EngineUnreachable(DockerResourceError):
    """The engine did not answer at all (refused, no route, no answer in time):
    its host is down or cut off, as opposed to an engine that answered with an error."""
