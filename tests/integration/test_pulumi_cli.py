"""The README's plain Pulumi commands, typed into a fresh shell.

A user who runs `pulumi` rather than `make` opens a shell in the project,
runs `source scripts/env.sh` and then the commands of the README's "Pulumi's
own commands". Each command here runs that way: a new `bash` with a bare
environment (only what a login shell has, plus the variables the README lets
a user set), `source scripts/env.sh`, then the command. The stack is new and
made the way `make up` tells a user to make one, with `pulumi stack init`
and `pulumi config set`.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shlex
import subprocess
import uuid

import yaml

from components.api_access import authorize_outputs
from components.dkron_client import DkronClient
from testing.harness import (
    ROOT,
    STACKS,
    discard_stack,
    docker_objects,
    eventually,
    free_port_block,
)

# Variables a user may have set in their own shell that the README honours.
USER_SETTINGS = (
    "DKRON_IAC_CACHE",
    "XDG_CACHE_HOME",
    "PULUMI_BACKEND_URL",
    "PULUMI_CONFIG_PASSPHRASE",
    "PULUMI_CONFIG_PASSPHRASE_FILE",
)
BARE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def in_fresh_shell(command: str, timeout_s: float = 300) -> subprocess.CompletedProcess[str]:
    """`command` run in a new bash in the project after `source scripts/env.sh`, as the README says."""
    env = {"HOME": os.environ["HOME"], "PATH": BARE_PATH, "TERM": "dumb", "LANG": "C.UTF-8"}
    env.update({k: os.environ[k] for k in USER_SETTINGS if k in os.environ})
    result = subprocess.run(
        ["bash", "-c", f"source scripts/env.sh && {command}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    print(f"$ {command}  (exit {result.returncode})\n{result.stdout}{result.stderr}")
    return result


def ok(command: str) -> str:
    result = in_fresh_shell(command)
    assert result.returncode == 0, f"{command!r} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def test_a_fresh_shell_runs_the_readmes_pulumi_commands_on_a_new_stack() -> None:
    name = f"t{uuid.uuid4().hex[:6]}"
    port = free_port_block(1)
    token = f"tok-{secrets.token_hex(8)}"
    stack_file = STACKS / f"Pulumi.{name}.yaml"
    try:
        # Before `make setup`'s environment, a login shell has no pulumi; after it, this project's.
        bare = subprocess.run(
            ["bash", "-c", "command -v pulumi"], env={"PATH": BARE_PATH}, capture_output=True, check=False
        )
        assert bare.returncode != 0, "a pulumi on the bare PATH would hide what env.sh does"
        assert ok("command -v pulumi").strip().endswith("/pulumi-current/bin/pulumi")

        # An unknown stack: `make up` names the stacks there are and says how to add one.
        unknown = in_fresh_shell(f"scripts/stack.sh up {name}")
        assert unknown.returncode == 2
        assert re.search(r"Stacks with a config here: .*\bdev, ha5\b", unknown.stderr), unknown.stderr
        assert f"cp stacks/Pulumi.dev.yaml stacks/Pulumi.{name}.yaml" in unknown.stderr
        assert f"pulumi stack init {name}" in unknown.stderr

        # Its recipe, with this test's own cluster name and port, and a job that takes the secret.
        ok(f"pulumi stack init {name}")
        for path, value in [
            ("cluster.name", name),
            ("cluster.nodes[0].name", "node1"),
            ("cluster.ports.api_port_base", str(port)),
            ("cluster.jobs[0].name", "report"),
            ("cluster.jobs[0].schedule", "@manually"),
            ("cluster.jobs[0].executor", "shell"),
            ("cluster.jobs[0].executor_config.command", "echo report"),
            ("cluster.jobs[0].secret_env.API_TOKEN", "report-api-token"),
        ]:
            ok(f"pulumi config set -s {name} --path {shlex.quote(path)} {shlex.quote(value)}")
        ok(f"pulumi config set -s {name} --secret report-api-token {token}")

        # The secret is kept encrypted in the stack file and read back in clear on request.
        text = stack_file.read_text()
        assert token not in text
        stored = yaml.safe_load(text)["config"]["dkron-cluster:report-api-token"]
        assert set(stored) == {"secure"}, stored
        assert ok(f"pulumi config get -s {name} report-api-token").strip() == token
        listing = ok(f"pulumi config -s {name}")
        assert "[secret]" in listing
        assert token not in listing

        assert name in ok("pulumi stack ls")

        ok(f"pulumi up -s {name} --yes")
        outputs = json.loads(ok(f"pulumi stack output -s {name} --json"))
        assert outputs["leader"] == "node1"
        assert outputs["jobs"] == ["report"]
        # The API's credentials are a secret output: hidden unless asked for.
        assert outputs["api_auth"] == "[secret]"
        assert outputs["ui"]["urls"]["node1"] == f"https://127.0.0.1:{port}/ui/"
        authorize_outputs(json.loads(ok(f"pulumi stack output -s {name} --json --show-secrets")))
        api_url = outputs["nodes"]["node1"]["api_url"]
        assert api_url == f"https://127.0.0.1:{port}"
        with DkronClient(api_url) as client:
            job = eventually("the job in Dkron", lambda: client.get_job("report"))
        assert f"API_TOKEN={token}" in job["executor_config"]["env"]
        assert token not in ok(f"pulumi stack export -s {name}")

        # Nothing to change after the update; a refresh finds no drift.
        preview = ok(f"pulumi preview -s {name} --diff")
        assert re.search(r"\b\d+ unchanged", preview), preview
        assert not re.search(r"\d+ to (create|update|replace|delete)", preview), preview
        refresh = ok(f"pulumi refresh -s {name} --yes")
        assert re.search(r"\b\d+ unchanged", refresh), refresh
        assert not re.search(r"\d+ (updated|deleted)", refresh), refresh

        ok(f"pulumi destroy -s {name} --yes")
        assert docker_objects(name) == {"containers": [], "networks": [], "volumes": []}
        ok(f"pulumi stack rm -s {name} --yes")
        assert name not in ok("pulumi stack ls")
        assert not stack_file.exists()
    finally:
        discard_stack(name, name)


def test_a_copied_stack_file_deploys_through_make_up() -> None:
    """The other way to add a stack: a copy of `dev` with its own cluster name and ports."""
    name = f"t{uuid.uuid4().hex[:6]}"
    stack_file = STACKS / f"Pulumi.{name}.yaml"
    try:
        ok(f"cp stacks/Pulumi.dev.yaml stacks/Pulumi.{name}.yaml")
        copied = yaml.safe_load(stack_file.read_text())
        cluster = copied["config"]["dkron-cluster:cluster"]
        cluster["name"] = name
        ports = free_port_block(len(cluster["nodes"]) + 1)
        cluster["ports"]["api_port_base"] = ports
        cluster["metrics"]["prometheus"]["port"] = ports + len(cluster["nodes"])
        stack_file.write_text(yaml.safe_dump(copied, sort_keys=False))

        # What `make up STACK=<name>` runs once set-up has run.
        ok(f"scripts/stack.sh up {name}")
        outputs = json.loads(ok(f"scripts/stack.sh outputs {name}"))
        assert sorted(outputs["voters"]) == ["node1", "node2", "node3"]
        assert outputs["jobs"] == ["python-daily"]
        assert outputs["prometheus"]["url"] == f"http://127.0.0.1:{ports + len(cluster['nodes'])}"
        # The next `make up` has nothing to do: a refresh reads back what the program declares.
        ok(f"pulumi preview -s {name} --refresh --expect-no-changes")
    finally:
        discard_stack(name, name)
