"""Command-line apps: one module per console script, each a thin Hydra wrapper around a pure function.

| console script | module | config |
|---|---|---|
| ``forgery-train`` | :mod:`forgery.cli.train` | ``conf/train.yaml`` |
| ``forgery-eval`` | :mod:`forgery.cli.eval` | ``conf/eval.yaml`` |
| ``forgery-predict`` | :mod:`forgery.cli.predict` | ``conf/predict.yaml`` |
| ``forgery-faces`` | :mod:`forgery.cli.faces` | ``conf/faces.yaml`` |
| ``forgery-data`` | :mod:`forgery.cli.data` | ``conf/check.yaml`` (``check``) |
| ``forgery-convert`` | :mod:`forgery.cli.convert` | ``conf/convert.yaml`` |

:func:`hydra_app` is what every app shares: the config directory (:func:`config_dir`, inside the package when
installed from a wheel, the checkout's top-level ``conf/`` otherwise), the OmegaConf resolvers (registered
here, explicitly), quiet third-party logging, user mistakes reported in one line, and a last line saying where
the outputs went.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any

from omegaconf import DictConfig
from omegaconf.errors import MissingMandatoryValue

from forgery.data.faces.sources import FaceDataError
from forgery.data.splicing.io import DataError
from forgery.errors import CheckpointError, ConfigError, OfficialWeightsError
from forgery.utils.quiet import quiet_third_party

__all__ = ["config_dir", "hydra_app", "user_message", "USER_ERRORS"]

log = logging.getLogger(__name__)


def config_dir() -> str:
    """Absolute path of the config tree: ``forgery/conf`` in an installed wheel, else ``<checkout>/conf``."""
    package = Path(__file__).resolve().parents[1]
    for candidate in (package / "conf", package.parent / "conf"):
        if (candidate / "train.yaml").is_file():
            return str(candidate)
    raise FileNotFoundError(
        f"forgery's configs are missing: neither {package / 'conf'} (wheel) nor {package.parent / 'conf'} "
        "(checkout) holds train.yaml; reinstall the package"
    )


# the user's to fix (one line, exit 2); every one of them is defined in a module that loads no torch
USER_ERRORS: tuple[type[BaseException], ...] = (
    ConfigError,
    DataError,
    FaceDataError,
    CheckpointError,
    OfficialWeightsError,
    FileNotFoundError,
    MissingMandatoryValue,
)


def user_message(err: BaseException) -> str:
    """One line for a user mistake (a DataLoader worker's re-raised error keeps only its last line)."""
    if isinstance(err, MissingMandatoryValue):
        key = getattr(err, "full_key", None) or "?"
        return f"missing required value: {key}=... (set it on the command line)"
    lines = [line.strip() for line in str(err).strip().splitlines() if line.strip()]
    if not lines:
        return type(err).__name__
    text = lines[-1] if "Original Traceback" in str(err) else " ".join(lines)
    prefix = f"{type(err).__name__}: "
    return text[len(prefix) :] if text.startswith(prefix) else text


def _user_error(err: BaseException) -> BaseException | None:
    """The user's mistake behind ``err``: itself, or what a ``_target_`` raised when Hydra instantiated it
    (Hydra wraps that in an ``InstantiationException``); None for anything else (a bug)."""
    from hydra.errors import InstantiationException

    while isinstance(err, InstantiationException) and err.__cause__ is not None:
        err = err.__cause__
    return err if isinstance(err, USER_ERRORS) else None


def hydra_app(config_name: str, prog: str) -> Callable[[Callable[[DictConfig], Any]], Callable[[], Any]]:
    """Decorator turning ``task(cfg)`` into a console-script ``main()`` over ``conf/<config_name>.yaml``.

    Errors that are the user's to fix (:data:`USER_ERRORS`: a missing file or required value, bad data, the
    wrong kind of checkpoint, an impossible option) print ``<prog>: error: <one line>`` and exit 2;
    ``HYDRA_FULL_ERROR=1`` shows the traceback instead. Anything else is a bug and keeps its traceback.
    """

    def decorate(task: Callable[[DictConfig], Any]) -> Callable[[], Any]:
        import hydra

        from forgery.utils.resolvers import register_resolvers

        @wraps(task)
        def guarded(cfg: DictConfig) -> Any:
            quiet_third_party()
            try:
                result = task(cfg)
            except Exception as raised:
                err = _user_error(raised)
                if err is None or os.environ.get("HYDRA_FULL_ERROR") == "1":
                    raise
                print(f"{prog}: error: {user_message(err)}", file=sys.stderr, flush=True)
                if _in_multirun():  # one bad job (e.g. a dataset root that is absent) is a row, not a crash
                    _record_failure(cfg, err)
                    return None
                sys.exit(2)
            out = _output_dir()
            if out:
                print(f"{prog}: outputs in {out}", flush=True)
            return result

        hydra_main = hydra.main(version_base="1.3", config_path=config_dir(), config_name=config_name)(
            guarded
        )

        @wraps(task)
        def main() -> Any:
            register_resolvers()
            return hydra_main()

        main.task = task  # type: ignore[attr-defined]
        return main

    return decorate


def _in_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def _record_failure(cfg: DictConfig, err: BaseException) -> None:
    """``failed.json`` in the job's folder, for the sweep summary."""
    import json

    from forgery.utils.io import atomic_write_text

    out = _output_dir()
    if out:
        data = cfg.get("data") if isinstance(cfg.get("data"), DictConfig) else None
        payload = {
            "error": user_message(err),
            "type": type(err).__name__,
            "dataset": data.get("name") if data else None,
        }
        atomic_write_text(Path(out) / "failed.json", json.dumps(payload, indent=2) + "\n")


def _output_dir() -> str | None:
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    return HydraConfig.get().runtime.output_dir
