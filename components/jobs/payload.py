"""A job as the body of Dkron's ``POST /v1/jobs``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from components.jobs.spec import JobSpec

__all__ = ["job_payload"]


def job_payload(spec: JobSpec, secret_env_values: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The JSON body for ``POST /v1/jobs``: the fields that differ from Dkron's defaults.

    ``secret_env_values`` maps each of ``spec.secret_env``'s variable names to
    its resolved value; they are appended to ``executor_config.env``. Error
    messages never quote a secret value.
    """
    body = spec.model_dump(exclude={"secret_env"}, exclude_defaults=True)
    body["name"] = spec.name
    body["executor"] = spec.executor
    if not spec.secret_env:
        return body
    values = secret_env_values or {}
    missing = sorted(set(spec.secret_env) - set(values))
    if missing:
        raise ValueError(f"job {spec.name!r}: no value for secret env {', '.join(missing)}")
    entries = [body["executor_config"]["env"]] if spec.executor_config.get("env") else []
    for var in spec.secret_env:
        if "," in values[var]:
            raise ValueError(
                f"job {spec.name!r}: the secret for env {var} (config key {spec.secret_env[var]!r}) contains"
                " ',', which Dkron's shell executor cannot pass (it splits env on commas)"
            )
        entries.append(f"{var}={values[var]}")
    body["executor_config"] = {**body.get("executor_config", {}), "env": ",".join(entries)}
    return body
