"""Running the Flower apps on Flower's Simulation Engine, in this process, and leaving nothing behind.

The ServerApp runs in a thread of this process; each site's ClientApp runs in a Ray actor with one CPU
(``client_resources``). Flower's telemetry and update check are switched off, and Ray's and Flower's
working files go to a temporary folder that is removed afterwards (``RAY_TMPDIR`` and ``FLWR_HOME``, unless
the caller set them). Ray is shut down when the run ends, also when it fails.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import shutil
import tempfile
import threading
import warnings
from typing import Iterator, Sequence

from privprep.schemas.errors import ConfigError

from .app import ServerOutcome, ServerPlan, make_client_app, make_server_app
from .site import SiteSpec

log = logging.getLogger(__name__)
EXTRA_HINT = "pip install torch==2.13.0 && pip install 'privprep[federated]'"
QUIET_ENV = {"FLWR_TELEMETRY_ENABLED": "0", "FLWR_DISABLE_UPDATE_CHECK": "1", "RAY_DEDUP_LOGS": "0",
             "RAY_USAGE_STATS_ENABLED": "0", "RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO": "0"}


def require_federated_extra() -> None:
    """Raise a one-line :class:`ConfigError` when flwr (with Ray), torch or opacus is missing (imports none of them)."""
    missing = [name for name in ("flwr", "ray", "torch", "opacus") if importlib.util.find_spec(name) is None]
    if missing:
        raise ConfigError(
            f"federated training needs {', '.join(missing)}, which the core install leaves out; install the extra: {EXTRA_HINT}"
        )


@contextlib.contextmanager
def quiet_environment() -> Iterator[str]:
    """Environment for an in-process simulation: no telemetry, temporary Ray/Flower folders; restored afterwards."""
    scratch = tempfile.mkdtemp(prefix="privprep-flwr-")  # short: Ray's socket paths must stay under ~100 characters
    wanted = {**QUIET_ENV, "RAY_TMPDIR": scratch, "FLWR_HOME": os.path.join(scratch, "flwr")}
    before = {key: os.environ.get(key) for key in wanted}
    for key, value in wanted.items():
        if key in QUIET_ENV or os.environ.get(key) is None:
            os.environ[key] = value
    try:
        yield scratch
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        shutil.rmtree(scratch, ignore_errors=True)


def simulate_flower(specs: Sequence[SiteSpec], plan: ServerPlan, *, cpus: int | None = None, verbose: bool = False) -> ServerOutcome | None:
    """Run FedAvg over ``specs`` on the Simulation Engine; the server's outcome (None if the ServerApp failed)."""
    from flwr.simulation import run_simulation

    outcome: list[ServerOutcome] = []
    stop = threading.Event()
    cpus = max(1, min(len(specs), cpus or os.cpu_count() or 1))
    backend = {"client_resources": {"num_cpus": 1, "num_gpus": 0.0},
               "init_args": {"num_cpus": cpus, "include_dashboard": False, "log_to_driver": verbose,
                             "logging_level": "INFO" if verbose else "ERROR"}}
    flwr_logger = logging.getLogger("flwr")
    level = flwr_logger.level
    if not verbose:
        flwr_logger.setLevel(logging.ERROR)
    try:
        with quiet_environment(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            run_simulation(server_app=make_server_app(plan, outcome, stop), client_app=make_client_app(specs),
                           num_supernodes=len(specs), backend_config=backend)  # type: ignore[arg-type]
    finally:
        stop.set()  # an interrupted run: the ServerApp thread stops waiting for replies and ends
        flwr_logger.setLevel(level)
        _shutdown_ray()
    return outcome[0] if outcome else None


def _shutdown_ray() -> None:
    try:
        import ray

        if ray.is_initialized():
            ray.shutdown()
    except Exception:  # pragma: no cover - best effort
        log.debug("ray shutdown failed", exc_info=True)


__all__ = ["EXTRA_HINT", "quiet_environment", "require_federated_extra", "simulate_flower"]
