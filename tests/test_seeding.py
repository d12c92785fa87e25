"""Training randomness keyed by (seed, step, rank): reproducible, different per rank, global RNG untouched;
the training order of GlobalBatchSampler: a function of (seed, epoch), the same global batches on any
number of processes, resumable mid-epoch."""

from __future__ import annotations

import torch

from forgery.augment.agda import AGDA
from forgery.data.samplers import GlobalBatchSampler
from forgery.utils.seeding import step_rng, step_seed


def _draw(step: int, rank: int, stream: int = 2) -> torch.Tensor:
    with step_rng(step, rank, stream):
        return torch.rand(8)


def test_step_rng_reproducible_per_rank_and_leaves_global_rng_alone() -> None:
    torch.manual_seed(0)
    before = torch.get_rng_state()
    assert torch.equal(_draw(5, 0), _draw(5, 0))
    assert not torch.equal(_draw(5, 0), _draw(5, 1))  # ranks differ
    assert not torch.equal(_draw(5, 0), _draw(6, 0))  # steps differ
    assert not torch.equal(_draw(5, 0, stream=1), _draw(5, 0, stream=2))  # streams differ
    assert torch.equal(torch.get_rng_state(), before)
    assert step_seed(5, 0, 2, seed=1) != step_seed(5, 0, 2, seed=2)  # the run's seed matters


def test_agda_draws_differ_across_ranks_and_repeat_on_the_same_rank() -> None:
    agda = AGDA()
    images = torch.rand(4, 3, 32, 32)
    maps = torch.rand(4, 4, 8, 8)

    def run(rank: int) -> tuple[torch.Tensor, torch.Tensor]:
        with step_rng(3, rank, 2):
            mixed, selected, _ = agda(images, maps)
        return mixed, selected

    a0, s0 = run(0)
    b0, t0 = run(0)
    a1, s1 = run(1)
    assert torch.equal(a0, b0) and torch.equal(s0, t0)
    assert not torch.equal(a0, a1)


def _batches(sampler: GlobalBatchSampler) -> list[list[int]]:
    idx = list(sampler)
    b = sampler.batch_size
    return [idx[i : i + b] for i in range(0, len(idx), b)]


def test_global_batches_do_not_depend_on_the_number_of_processes() -> None:
    data = list(range(23))
    one = GlobalBatchSampler(data, batch_size=4, seed=7, num_replicas=1, rank=0)
    r0 = GlobalBatchSampler(data, batch_size=2, seed=7, num_replicas=2, rank=0)
    r1 = GlobalBatchSampler(data, batch_size=2, seed=7, num_replicas=2, rank=1)
    for epoch in (0, 3):
        for s in (one, r0, r1):
            s.set_epoch(epoch)
        glob = _batches(one)
        assert len(glob) == len(one) // 4 == 5  # 23 // 4 steps, the incomplete global batch dropped
        assert [a + b for a, b in zip(_batches(r0), _batches(r1))] == glob
        assert len({i for b in glob for i in b}) == 20  # no sample twice in an epoch
    one.set_epoch(0)
    first = list(one)
    one.set_epoch(1)
    assert list(one) != first  # a new order each epoch


def test_skip_batches_resumes_mid_epoch_once() -> None:
    data = list(range(16))
    s = GlobalBatchSampler(data, batch_size=4, seed=0, num_replicas=1, rank=0)
    full = list(s)
    s.skip_batches = 3
    assert list(s) == full[12:]
    assert list(s) == full  # only the first iteration after the resume is shortened
