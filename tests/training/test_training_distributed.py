"""Two CPU processes (gloo): negatives really are gathered across devices.

The loss of each process uses its own queries against every process's documents; averaged over
processes (as DDP averages gradients) it must equal the single-process loss on the union batch.
The gradient is the authors' by default: their code computes the global loss on every process and
DDP averages, so the step follows the global loss divided by the number of devices. With
``gathered_loss_scale='global'`` it is the union batch's own gradient. A second test runs the real
entry point under torchrun.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from sentence_transformers.base.losses.merged_forward import embed_columns

from lens_embed.training.losses import LensInfoNCELoss, LexiconFlopsLoss, sparsity_regularized

WORLD_SIZE = 2
REPO_ROOT = Path(__file__).resolve().parents[2]
COLUMNS = [
    [
        "<instruct>Find\n<query>the fox",
        "<instruct>Find\n<query>the bank",
        "<instruct>Find\n<query>a kite",
        "<instruct>Find\n<query>the cat",
    ],
    [
        "the quick brown fox jumps",
        "the reserve bank of australia",
        "a red kite in the park",
        "the cat sat quietly",
    ],
    ["oilskin jackets", "a man plays guitar", "interest rates were raised", "large language models"],
]


def _loss_and_grads(
    model,
    columns: list[list[str]],
    gather: bool,
    mini_batch_size: int | None,
    scale: float = 1.0,
    flops: float = 0.0,
):
    """Loss value and flattened parameter gradients of one forward/backward (no dropout); with ``flops``,
    the FLOPS regulariser at that weight on documents and half of it on queries."""
    model.eval()
    model.zero_grad()
    loss_fn = LensInfoNCELoss(
        model,
        gather_across_devices=gather,
        mini_batch_size=None if flops else mini_batch_size,
        gathered_gradient_scale=scale,
    )
    if flops:
        loss_fn = sparsity_regularized(loss_fn, 16, flops, flops / 2, mini_batch_size)
    loss = loss_fn([model.preprocess(column) for column in columns], None)
    if isinstance(loss, dict):  # as sentence-transformers' trainer does with SpladeLoss' parts
        loss = torch.stack(list(loss.values())).sum()
    loss.backward()
    grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
    return loss.detach(), grads


# name: (gather, mini_batch_size, gradient scale, FLOPS weight);
# 1 / WORLD_SIZE is what build_losses sets by default.
FLOPS_WEIGHT = 3.0
VARIANTS = {
    "gathered": (True, None, 1.0, 0.0),
    "gathered_cached": (True, 1, 1.0, 0.0),
    "local_only": (False, None, 1.0, 0.0),
    "authors": (True, None, 1 / WORLD_SIZE, 0.0),
    "authors_cached": (True, 1, 1 / WORLD_SIZE, 0.0),
    "regularized": (True, None, 1.0, FLOPS_WEIGHT),
    "regularized_cached": (True, 1, 1.0, FLOPS_WEIGHT),
}


def _worker(rank: int, init_file: str, model_dir: str, result: str) -> None:
    """One process: its half of the batch for every variant; DDP-style averaged loss and grads."""
    from lens_embed import load_lens_model

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD_SIZE)
    try:
        model = load_lens_model(model_dir, device="cpu")
        half = len(COLUMNS[0]) // WORLD_SIZE
        local = [column[rank * half : (rank + 1) * half] for column in COLUMNS]
        results = {}
        for name, (gather, mini_batch_size, scale, flops) in VARIANTS.items():
            loss, grads = _loss_and_grads(model, local, gather, mini_batch_size, scale, flops)
            dist.all_reduce(loss)
            dist.all_reduce(grads)
            results[name] = {"loss": loss / WORLD_SIZE, "grads": grads / WORLD_SIZE}
        if rank == 0:
            torch.save(results, result)
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def two_process_results(tiny_lens: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Spawn the two gloo processes once for all variants (process start-up dominates the cost)."""
    directory = tmp_path_factory.mktemp("gloo")
    result = directory / "results.pt"
    mp.spawn(
        _worker, args=(str(directory / "init"), str(tiny_lens), str(result)), nprocs=WORLD_SIZE, join=True
    )
    return torch.load(result)


@pytest.fixture(scope="module")
def union(tiny_lens: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Loss and gradients of one process holding the whole (union) batch."""
    from lens_embed import load_lens_model

    return _loss_and_grads(load_lens_model(tiny_lens, device="cpu"), COLUMNS, False, None)


def _assert_agrees(result: dict, loss: torch.Tensor, grads: torch.Tensor, devices: int = 1) -> None:
    """A two-process run logged ``loss`` and computed the gradient ``grads / devices`` (to the rounding of
    float32 sums taken in another order)."""
    torch.testing.assert_close(result["loss"], loss, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(result["grads"], grads / devices, rtol=1e-3, atol=2e-5 / devices)


@pytest.mark.parametrize("variant", ["gathered", "gathered_cached"])
def test_gathered_loss_equals_single_process_loss_on_the_union_batch(
    two_process_results, union, variant
) -> None:
    _assert_agrees(two_process_results[variant], *union)


@pytest.mark.parametrize("variant", ["authors", "authors_cached"])
def test_default_gradient_is_the_global_loss_over_the_number_of_devices(
    two_process_results, union, variant
) -> None:
    """The authors' scale: logged loss = the global loss, gradient = its gradient / devices."""
    _assert_agrees(two_process_results[variant], *union, devices=WORLD_SIZE)
    assert not torch.allclose(two_process_results[variant]["grads"], union[1], rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("variant", ["regularized", "regularized_cached"])
def test_the_regulariser_acts_per_device_beside_the_gathered_loss(
    two_process_results, tiny_lens: Path, variant
) -> None:
    """As SpladeLoss: each process regularises its own embeddings, the InfoNCE still gathers every
    process's documents. Averaged over processes: the union batch's InfoNCE plus the mean of the
    per-process regularisers, with gradient caching too."""
    from lens_embed import load_lens_model

    model = load_lens_model(tiny_lens, device="cpu")
    model.eval()
    queries, *documents = embed_columns(model, [model.preprocess(column) for column in COLUMNS])
    expected = LensInfoNCELoss(model).compute_loss_from_embeddings([queries, *documents])
    flops = LexiconFlopsLoss(model, 16)
    half = len(COLUMNS[0]) // WORLD_SIZE
    for rank in range(WORLD_SIZE):
        rows = slice(rank * half, (rank + 1) * half)
        local = FLOPS_WEIGHT * flops.compute_loss_from_embeddings(
            torch.cat([column[rows] for column in documents])
        )
        local = local + FLOPS_WEIGHT / 2 * flops.compute_loss_from_embeddings(queries[rows])
        expected = expected + local / WORLD_SIZE
    expected.backward()
    expected_grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
    distributed = two_process_results[variant]
    _assert_agrees(distributed, expected.detach(), expected_grads)
    assert distributed["loss"].item() > two_process_results["gathered"]["loss"].item() + 0.1


def test_build_losses_scales_gathered_losses_by_the_devices(lens_model, tmp_path: Path) -> None:
    from lens_embed.training.config import TrainConfig
    from lens_embed.training.data import task_spec
    from lens_embed.training.trainer import build_losses

    specs = {"retrieval": task_spec("normal"), "class": task_spec("symmetric_class")}
    config = TrainConfig(model="m", data=[], output=str(tmp_path))
    losses = build_losses(lens_model, specs, config, world_size=16)
    assert losses["retrieval"].gather_across_devices and losses["retrieval"].gathered_gradient_scale == 1 / 16
    assert not losses["class"].gather_across_devices  # own group only: nothing gathered, nothing rescaled
    config.gathered_loss_scale = "global"
    assert build_losses(lens_model, specs, config, world_size=16)["retrieval"].gathered_gradient_scale == 1.0


def test_without_gathering_the_loss_differs(two_process_results, union) -> None:
    local_only = two_process_results["local_only"]
    assert local_only["loss"].item() < union[0].item() - 1e-3  # fewer negatives, lower loss
    assert not torch.allclose(local_only["grads"], union[1], rtol=1e-3, atol=2e-5)


@pytest.mark.parametrize(
    "regularizer",
    [[], ["--document-regularizer-weight", "1", "--query-regularizer-weight", "0.5"]],
    ids=["lens", "flops"],
)
def test_torchrun_two_processes_trains_and_saves(
    tiny_lens: Path, task_files: list[Path], tmp_path: Path, regularizer: list[str]
) -> None:
    """The real entry point under torchrun (gloo DDP): mixed tasks, gathered negatives, no deadlock; with the
    FLOPS regulariser, its parts and the active dimensions gathered from both processes into rank 0's log."""
    output = tmp_path / "trained"
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "lens_embed.training",
        "--model",
        str(tiny_lens),
        "--data",
        *map(str, task_files),
        "--output",
        str(output),
        "--batch-size",
        "2",
        "--group-size",
        "3",
        "--max-steps",
        "4",
        "--logging-steps",
        "1",
        "--lr",
        "1e-3",
        "--warmup-steps",
        "0",
        "--symmetric-batch-size",
        "4",
        *regularizer,
    ]
    # Two CPU processes (gloo) everywhere, also on a machine with one GPU.
    # This checkout's lens_embed, whatever an installed copy points at.
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "CUDA_VISIBLE_DEVICES": "",
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    completed = subprocess.run(command, capture_output=True, text=True, timeout=240, env=env, cwd=tmp_path)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert (output / "modules.json").is_file() and (output / "lora_adapter" / "adapter_config.json").is_file()
    # One process group (not two lone runs writing one folder): only rank 0 logs, once per step.
    logged = completed.stdout + completed.stderr
    assert logged.count("{'loss': ") == 4
    assert (
        logged.count("'document_active_dims': ")
        == logged.count("'query_regularizer_loss': ")
        == (4 if regularizer else 0)
    )
