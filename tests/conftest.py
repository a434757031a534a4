"""Session-wide: what the engine holds before the tests start, and the order modules start in."""

import pytest

# The integration modules that take longest (summed per module from `make test`'s durations),
# longest first. `make test` hands whole modules to parallel workers in collection order, so
# the long ones start at once and the short ones fill in beside them; the unit tests go first.
LONGEST_FIRST = (
    "test_hosts.py",
    "test_membership.py",
    "test_lost_host.py",
    "test_jobs_stack.py",
    "test_jobs_scale.py",
    "test_metrics.py",
    "test_preview_summary.py",
    "test_privilege.py",
    "test_rollout.py",
    "test_docker_resources.py",
    "test_cluster.py",
    "test_bad_input.py",
    "test_smoke.py",
    "test_pulumi_cli.py",
    "test_layout_compat.py",
    "test_jobs_layout_compat.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: place for place, name in enumerate(LONGEST_FIRST)}

    def order(item: pytest.Item) -> tuple[bool, int]:
        integration = "tests/integration" in str(item.path)
        return (integration, rank.get(item.path.name, len(rank)) if integration else 0)

    items.sort(key=order)  # stable: a module's tests keep their file order


def pytest_report_header() -> str:
    """Say when the engine holds project objects `make setup` did not make:
    CI removes them before the tests, so no test may rely on them."""
    import importlib.util
    from pathlib import Path

    from components.docker_objects import DockerResourceError, engine

    path = Path(__file__).resolve().parents[1] / "scripts" / "clean_slate.py"
    spec = importlib.util.spec_from_file_location("clean_slate", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    try:
        with engine() as client:
            found = module.leftovers(client, module.setup_images())
    except DockerResourceError as err:
        return f"docker engine: not answering ({err})"
    names = [what for items in found.values() for _ref, what in items]
    if not names:
        return "project Docker objects besides make setup's: none"
    return (
        f"project Docker objects besides make setup's: {len(names)} (CI removes them first; "
        f"no test may rely on them; `make clean-slate` lists them)"
    )


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The modules that took longest (setup, call and teardown summed), after pytest's slowest tests:
    what `LONGEST_FIRST` is ordered by, and where to look when the suite grows slower."""
    per_module: dict[str, float] = {}
    for reports in terminalreporter.stats.values():
        for report in reports:
            if isinstance(report, pytest.TestReport):
                module = report.nodeid.split("::", 1)[0]
                per_module[module] = per_module.get(module, 0.0) + report.duration
    if not per_module:
        return
    terminalreporter.write_sep("=", "slowest modules (worker time, setup + call + teardown)")
    for module, seconds in sorted(per_module.items(), key=lambda item: -item[1])[:10]:
        terminalreporter.write_line(f"{seconds:8.1f}s {module}")
