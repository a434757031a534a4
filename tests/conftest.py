"""Session-wide: what the engine holds before the tests start."""


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
