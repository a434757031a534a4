"""The one error every Docker helper raises."""


class DockerResourceError(Exception):
    """A Docker operation failed; the message says which object and why."""
