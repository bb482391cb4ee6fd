"""Evaluation harness: LENS models through mteb 2.x (hub and offline) and AIR-Bench.

Modules: ``data`` (where the offline data lives), ``offline`` (mteb tasks over local folders),
``mteb_model`` (encoder, ModelMeta, loader), ``tasks`` (hub task lists), ``baselines``,
``runner`` (results in mteb's layout), ``reports`` (Markdown + PNG), ``harness`` (exactness check),
``airbench``, ``cli`` (the ``evaluate`` verb).
"""

from lens_embed.evaluation.data import DATA_ENV_VAR, DataDirError, resolve_data_dir
from lens_embed.evaluation.offline import UnknownTaskError, offline_tasks

__all__ = ["DATA_ENV_VAR", "DataDirError", "UnknownTaskError", "offline_tasks", "resolve_data_dir"]
