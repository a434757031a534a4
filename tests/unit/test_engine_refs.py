"""Engine refs, container locators and the ssh command line, without any engine."""

from __future__ import annotations

from pathlib import Path

import pytest

from components.docker_objects import (
    DockerResourceError,
    EngineRef,
    locator,
    parse_engine_ref,
    split_locator,
    ssh_command,
)
from components.docker_objects.engine_ref import TLS_FILES, ssh_control_dir, tls_config
from components.docker_objects.ssh import last_ssh_error


@pytest.mark.parametrize("ref", [None, ""])
def test_no_ref_is_the_local_engine(ref: str | None) -> None:
    assert parse_engine_ref(ref) is None


def test_a_unix_ref_is_its_socket() -> None:
    parsed = parse_engine_ref("unix:///run/h1/docker.sock")
    assert parsed == EngineRef(
        ref="unix:///run/h1/docker.sock",
        scheme="unix",
        base_url="unix:///run/h1/docker.sock",
        path="/run/h1/docker.sock",
    )


def test_a_tcp_ref_keeps_its_tls_folder() -> None:
    parsed = parse_engine_ref("tcp://10.0.0.5:2376?tls=/etc/dkron/tls")
    assert parsed is not None
    assert (parsed.base_url, parsed.host, parsed.port, parsed.tls_dir) == (
        "tcp://10.0.0.5:2376",
        "10.0.0.5",
        2376,
        "/etc/dkron/tls",
    )


def test_an_ssh_ref_with_every_option() -> None:
    parsed = parse_engine_ref("ssh://root@10.213.77.11:2222?identity=/w/.lab/id&known_hosts=/w/.lab/kh")
    assert parsed is not None
    assert (parsed.user, parsed.host, parsed.port, parsed.identity, parsed.known_hosts) == (
        "root",
        "10.213.77.11",
        2222,
        "/w/.lab/id",
        "/w/.lab/kh",
    )
    assert parsed.base_url == "ssh://root@10.213.77.11:2222"


def test_an_ssh_ref_needs_no_option_nor_port() -> None:
    parsed = parse_engine_ref("ssh://root@h1")
    assert parsed is not None
    assert (parsed.user, parsed.host, parsed.port, parsed.identity, parsed.known_hosts) == (
        "root",
        "h1",
        None,
        "",
        "",
    )


@pytest.mark.parametrize(
    ("ref", "says"),
    [
        ("http://localhost:2375", "not an engine URL; allowed: unix://, tcp://, ssh://"),
        ("localhost:2375", "not an engine URL"),
        ("unix://relative/docker.sock", "expected unix:///absolute/path"),
        ("unix:///run/d.sock?tls=/x", "unknown option 'tls' for unix://"),
        ("tcp://10.0.0.5", "expected tcp://host:port"),
        ("tcp://10.0.0.5:http", "bad port"),
        ("tcp://10.0.0.5:2376?tls=certs", "tls= must be an absolute path"),
        ("tcp://10.0.0.5:2376?identity=/k", "unknown option 'identity' for tcp://"),
        ("ssh://root@h1?identity=id_ed25519", "identity= must be an absolute path"),
        ("ssh://root@h1?identity=/a&identity=/b", "option 'identity' given twice"),
        ("ssh://root@h1?user=x", "unknown option 'user' for ssh:// (allowed: identity, known_hosts)"),
        ("ssh://root:secret@h1", "a password does not belong"),
        ("ssh://root@-oProxyCommand=x", "cannot start with '-'"),
        ("ssh://root@h1/var/run/docker.sock", "expected ssh://user@host"),
        ("ssh://", "expected ssh://user@host"),
    ],
)
def test_a_bad_ref_says_what_is_wrong(ref: str, says: str) -> None:
    with pytest.raises(DockerResourceError, match=f"^the Docker engine at {_re(ref)}: .*{_re(says)}"):
        parse_engine_ref(ref)


def _re(text: str) -> str:
    import re

    return re.escape(text)


def test_locators_split_on_the_first_at() -> None:
    ref = "ssh://root@10.213.77.11?identity=/w/.lab/id_ed25519"
    assert split_locator("dkron-dev-node1") == (None, "dkron-dev-node1")
    assert split_locator(f"dkron-lab3-node1@{ref}") == (ref, "dkron-lab3-node1")
    assert locator("dkron-lab3-node1", ref) == f"dkron-lab3-node1@{ref}"
    assert locator("dkron-dev-node1", None) == locator("dkron-dev-node1", "") == "dkron-dev-node1"
    assert split_locator(locator("n", ref)) == (ref, "n")


@pytest.mark.parametrize("value", ["@ssh://root@h1", "node1@", ""])
def test_a_bad_locator_is_refused(value: str) -> None:
    with pytest.raises(DockerResourceError, match="container locator"):
        split_locator(value)


@pytest.mark.parametrize("name", ["", "a@b"])
def test_a_locator_needs_a_plain_name(name: str) -> None:
    with pytest.raises(DockerResourceError, match="container name"):
        locator(name, "unix:///run/d.sock")


def test_the_ssh_command_names_identity_known_hosts_and_its_shared_connection() -> None:
    argv = ssh_command("ssh://root@10.213.77.11:2222?identity=/k/id&known_hosts=/k/kh")
    assert argv[0] == "ssh"
    assert argv[-5:] == ["-p", "2222", "-l", "root", "10.213.77.11"]
    options = _options(argv)
    assert options["BatchMode"] == "yes"
    assert options["ConnectTimeout"] == "5"
    assert (options["ServerAliveInterval"], options["ServerAliveCountMax"]) == ("2", "3")
    assert argv[argv.index("-i") + 1] == "/k/id"
    assert options["IdentitiesOnly"] == "yes"
    assert options["UserKnownHostsFile"] == "/k/kh"
    assert options["GlobalKnownHostsFile"] == "/dev/null"
    assert options["StrictHostKeyChecking"] == "yes"
    assert options["ControlMaster"] == "auto"
    assert options["ControlPersist"] == "30"
    control = Path(options["ControlPath"])
    assert control.parent == ssh_control_dir()
    assert len(str(control)) < 80  # a unix socket path is at most 108 bytes, and ssh adds a suffix


def test_the_ssh_command_without_options_leaves_ssh_its_defaults() -> None:
    argv = ssh_command("ssh://h1")
    options = _options(argv)
    assert "-i" not in argv
    assert "-p" not in argv
    assert "-l" not in argv
    assert not {"IdentitiesOnly", "UserKnownHostsFile", "StrictHostKeyChecking"} & set(options)
    assert argv[-1] == "h1"


def test_each_ref_has_its_own_shared_connection() -> None:
    # Another known_hosts file must not ride on a connection checked with the first.
    def control(ref: str) -> str:
        return _options(ssh_command(ref))["ControlPath"]

    assert control("ssh://root@h1?known_hosts=/a") != control("ssh://root@h1?known_hosts=/b")
    assert control("ssh://root@h1") == control("ssh://root@h1")


def test_a_forward_gets_its_own_connection_and_options_before_the_host() -> None:
    argv = ssh_command("ssh://root@h1", "-N", "-L", "127.0.0.1:1:127.0.0.1:2", multiplex=False)
    assert argv[-4:] == ["-N", "-L", "127.0.0.1:1:127.0.0.1:2", "h1"]
    options = _options(argv)
    assert (options["ControlMaster"], options["ControlPath"]) == ("no", "none")
    assert "ControlPersist" not in options


@pytest.mark.parametrize("ref", ["unix:///run/d.sock", "tcp://h:2376", None])
def test_only_ssh_refs_have_an_ssh_command(ref: str | None) -> None:
    with pytest.raises(DockerResourceError, match="not an ssh:// engine"):
        ssh_command(ref or "")


def _options(argv: list[str]) -> dict[str, str]:
    pairs = [argv[i + 1].split("=", 1) for i, arg in enumerate(argv) if arg == "-o"]
    return {key: value for key, value in pairs}


def test_tls_uses_the_folders_three_files_and_verifies(tmp_path: Path) -> None:
    for name in TLS_FILES:
        (tmp_path / name).write_text("not read until the first connection\n")
    parsed = parse_engine_ref(f"tcp://10.0.0.5:2376?tls={tmp_path}")
    assert parsed is not None
    tls = tls_config(parsed)
    assert tls.verify is True
    assert tls.ca_cert == str(tmp_path / "ca.pem")
    assert tls.cert == (str(tmp_path / "cert.pem"), str(tmp_path / "key.pem"))


@pytest.mark.parametrize("missing", TLS_FILES)
def test_tls_names_the_missing_file(tmp_path: Path, missing: str) -> None:
    for name in TLS_FILES:
        if name != missing:
            (tmp_path / name).write_text("x\n")
    parsed = parse_engine_ref(f"tcp://10.0.0.5:2376?tls={tmp_path}")
    assert parsed is not None
    with pytest.raises(DockerResourceError, match=f"TLS file {_re(str(tmp_path / missing))} is missing"):
        tls_config(parsed)


def test_the_last_line_of_ssh_says_why() -> None:
    assert last_ssh_error("") == ""
    assert last_ssh_error("ssh: connect to host 10.0.0.9 port 22: Connection refused\r\n") == (
        "ssh: connect to host 10.0.0.9 port 22: Connection refused"
    )
    changed = (
        "@@@@@@@@@@\n@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\n@@@@@@@@@@\n"
        "Someone could be eavesdropping on you right now (man-in-the-middle attack)!\n"
        "Host key verification failed.\n"
    )
    assert last_ssh_error(changed) == (
        "Host key verification failed. (the host key differs from the one in known_hosts)"
    )
