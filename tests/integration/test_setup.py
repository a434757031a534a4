"""Set-up's Dkron image: made without a word on the terminal, usable as the node Dockerfile's source."""

from __future__ import annotations

import io
import subprocess
import uuid
from pathlib import Path

from components.docker_objects import engine
from testing.harness import BASE_IMAGE, ROOT, remove_image


def test_the_dkron_image_is_made_silently_and_serves_the_node_dockerfile(tmp_path: Path) -> None:
    binary = tmp_path / "dkron"
    binary.write_text("#!/bin/sh\necho dkron stand-in\n")
    tag = f"dkron-iac/t{uuid.uuid4().hex[:6]}-dkron:test"
    node_tag = f"{tag}-node"
    try:
        made = subprocess.run(
            [str(ROOT / "scripts/build-dkron-image.sh"), str(binary), tag, "dkron-iac.binary=abc"],
            capture_output=True,
            text=True,
            check=False,
        )
        assert made.returncode == 0, made.stderr
        # No "legacy builder is deprecated" banner, nor anything else.
        assert (made.stdout, made.stderr) == ("", "")

        with engine() as client:
            assert client.images.get(tag).labels == {"dkron-iac.binary": "abc"}
            # As in dockerfiles/Dockerfile: the binary copied from the image, run on the base image.
            dockerfile = (
                f"FROM {tag} AS dkron\nFROM {BASE_IMAGE}\n"
                "COPY --from=dkron /usr/local/bin/dkron /usr/local/bin/dkron\n"
            )
            client.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=node_tag, pull=False, rm=True)
            ran = client.containers.run(node_tag, ["dkron"], remove=True)
        assert ran.decode().strip() == "dkron stand-in"
    finally:
        remove_image(node_tag)
        remove_image(tag)
