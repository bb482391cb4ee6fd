"""Evaluation harness: LENS models through mteb 2.x (hub and offline) and AIR-Bench.

Modules: ``data`` (where the offline data lives), ``offline`` (mteb tasks over local folders),
``instructions`` (instruction sources as mteb's ``prompts_dict``: the authors' map, mteb's prompts or a
file; the task-to-side rule), ``encoders`` (mteb's ``InstructSentenceTransformerModel`` around a loaded
model, with the registry entry's arguments; its ModelMeta and loader, the MiniLM and BM25 baselines),
``tasks`` (hub task lists, leaderboard splits and subsets), ``model_runs`` (MODEL= and the baselines as
runs), ``runner`` (results in mteb's layout), ``results`` (a model's results: their revision, their
files, the card's rows), ``search`` (retrieval through resumable shards or the engine), ``reports``
(Markdown + PNG), ``leaderboard`` (``compare`` with the published LENS scores, the ``harness`` check,
``airbench`` runs, the ``submit`` kit and its AIR-Bench upload zip). The ``lens-embed evaluate`` verbs
live in :mod:`lens_embed.commands` (options: ``evaluation_options``). Names resolve lazily: importing the
package loads neither mteb nor torch."""

from lens_embed.base.lazy import lazy_exports

# the module that defines each public name -> those names
__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "lens_embed.evaluation.data": ("DATA_ENV_VAR", "DataDirError", "resolve_data_dir"),
        "lens_embed.evaluation.offline": ("UnknownTaskError", "offline_tasks"),
    },
)
