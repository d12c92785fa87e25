"""Quiet third-party output: what every app (and every benchmark process) sets before it runs."""

from __future__ import annotations

import logging
import warnings

__all__ = ["quiet_third_party"]


def _no_tips(record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith("\N{ELECTRIC LIGHT BULB} Tip")


def quiet_third_party() -> None:
    """Logs and warnings show what matters: no PIL chunk chatter, no advertising tips, no warnings the user
    cannot act on."""
    for name in ("PIL", "matplotlib", "urllib3", "fsspec", "h5py", "git"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logger = logging.getLogger(name)
        if _no_tips not in logger.filters:
            logger.addFilter(_no_tips)
    for pattern in (
        ".*does not have many workers.*",
        ".*Checkpoint directory .* exists and is not empty.*",
        ".*`isinstance.*treespec.*",
        ".*The number of training batches .* is smaller than the logging interval.*",
        ".*LeafSpec.*",
        ".*GPU available but not used.*",
        ".*Total length of .* across ranks is zero.*",
        ".*You called `self.log.*` with the same key.*",
        ".*torch.meshgrid: in an upcoming release.*",
        ".*Found .* module\\(s\\) in eval mode at the start of training.*",
        ".*Consider setting `persistent_workers=True`.*",
        ".*Experiment logs directory .* exists and is not empty.*",
        # ForgeryModule runs the device-side augmentation in on_after_batch_transfer on purpose.
        ".*overridden `on_after_batch_transfer` in `LightningModule`.*",
    ):
        warnings.filterwarnings("ignore", message=pattern)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
