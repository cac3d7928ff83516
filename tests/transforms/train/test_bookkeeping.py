"""Book-keeping ghost clipping (``grad_sample_mode="bk"``) against a per-example autograd loop and Opacus' two passes."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest


def _one_step(torch: Any, model: Any, x: Any, y: Any, *, mode: str, clip: float, sigma: float = 0.0) -> str:
    """One DP-SGD step (SGD, lr 1) of ``model`` on the batch (x, y) by ``make_private``; the mode it used."""
    from opacus import PrivacyEngine

    from privprep.transforms.train.dpsgd import _pass_through, _Rows, _run_steps, make_private

    loader = torch.utils.data.DataLoader(_Rows(x, y), batch_size=len(x), collate_fn=_pass_through)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore")
        private, optimizer, criterion, _, used = make_private(
            PrivacyEngine(), module=model, optimizer=torch.optim.SGD(model.parameters(), lr=1.0), loader=loader,
            noise_multiplier=sigma, max_grad_norm=clip, noise_generator=torch.Generator().manual_seed(0), mode=mode,
        )
        optimizer.zero_grad(set_to_none=True)
        criterion(private(x), y).backward()
        optimizer.step()
    return used


def _network(torch: Any) -> Any:
    nn = torch.nn
    return nn.Sequential(nn.GroupNorm(1, 2, affine=False), nn.Conv2d(2, 3, 3, padding=1), nn.Tanh(), nn.MaxPool2d(2, stride=1),
                         nn.Conv2d(3, 4, 3, stride=2, dilation=1, bias=False), nn.Tanh(), nn.Flatten(), nn.Linear(4 * 2 * 2, 5),
                         nn.Tanh(), nn.Linear(5, 3))


def test_a_book_keeping_step_is_the_mean_of_the_clipped_per_example_gradients(torch: Any, per_example: Any) -> None:
    """Without noise, one step moves the weights by exactly -(1/B) Σ_i min(1, C/‖g_i‖) g_i, with every example clipped."""
    torch.manual_seed(3)
    model = _network(torch)
    x, y = torch.randn(7, 2, 6, 6), torch.tensor([0, 1, 2, 0, 1, 2, 0])
    clip = 0.05
    grads = per_example(model, x, y)
    factors = [min(1.0, clip / (float(torch.sqrt(sum((g ** 2).sum() for g in gs))) + 1e-6)) for gs in grads]
    assert max(factors) < 1.0
    expected = [p.detach() - sum(f * gs[k] for f, gs in zip(factors, grads)) / len(x) for k, p in enumerate(model.parameters())]
    assert _one_step(torch, model, x, y, mode="bk", clip=clip) == "bk"
    for got, want in zip(model.parameters(), expected):
        assert torch.allclose(got, want, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("kind,shape", [("cnn", (1, 8, 8)), ("cnn", (1, 28, 28)), ("scatter_cnn", (9, 4, 4)), ("scatter_linear", (9, 4, 4))])
def test_book_keeping_equals_opacus_two_pass_ghost_clipping_on_the_stage_models(torch: Any, kind: str, shape: tuple[int, ...]) -> None:
    """The same weights after a step (no noise) as Opacus' ghost clipping and its hooks mode, on every model the stage trains."""
    from privprep.transforms.train.model import ScatterHead, SmallCNN

    def build() -> Any:
        torch.manual_seed(5)
        if kind == "cnn":
            return SmallCNN(shape=shape, classes=4)
        return ScatterHead(features=shape, classes=4, kind=kind)

    x, y = torch.rand(12, *shape) * 2 - 1, torch.arange(12) % 4
    after = {}
    for mode in ("bk", "ghost", "hooks"):
        model = build()
        _one_step(torch, model, x, y, mode=mode, clip=0.1)
        after[mode] = [p.detach().clone() for p in model.parameters()]
    moved = max(float((a - b).abs().max()) for a, b in zip(after["bk"], [p.detach() for p in build().parameters()]))
    assert moved > 1e-4
    for other in ("ghost", "hooks"):
        for a, b in zip(after["bk"], after[other]):
            assert torch.allclose(a, b, rtol=1e-4, atol=1e-7)


def test_a_network_book_keeping_cannot_handle_falls_back_to_two_pass_ghost_clipping(torch: Any) -> None:
    from privprep.transforms.train.bookkeeping import supports

    nn = torch.nn
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.LayerNorm(8), nn.Linear(8, 3))  # LayerNorm's affine weights
    assert not supports(model) and supports(_network(torch))
    x, y = torch.randn(6, 1, 4, 4), torch.tensor([0, 1, 2, 0, 1, 2])
    assert _one_step(torch, model, x, y, mode="bk", clip=1.0) == "ghost"


def test_book_keeping_keeps_the_accounting_and_batch_memory_manager_chunks_give_the_same_model(torch: Any) -> None:
    """σ, q, steps and ε are those of two-pass ghost clipping; a logical batch in physical chunks trains the same weights."""
    from privprep.transforms.train.data import Examples
    from privprep.transforms.train.dpsgd import train_dp
    from privprep.transforms.train.settings import DpSgdSettings

    rng = np.random.default_rng(0)
    data = Examples(rng.random((128, 1, 8, 8), dtype=np.float32) * 2 - 1, rng.integers(0, 10, 128))
    settings = DpSgdSettings(target_epsilon=4.0, delta=1e-3, epochs=2, batch_size=64, seed=7, accountant="rdp")
    bk = train_dp(data, data, settings, classes=10)
    ghost = train_dp(data, data, settings.replace(grad_sample_mode="ghost"), classes=10)
    chunks = train_dp(data, data, settings.replace(physical_batch_size=16), classes=10)
    assert bk.extras["grad_sample_mode"] == chunks.extras["grad_sample_mode"] == "bk"
    assert (bk.noise_multiplier, bk.sample_rate, bk.steps, bk.epsilons) == (ghost.noise_multiplier, ghost.sample_rate, ghost.steps, ghost.epsilons)
    assert bk.steps == 4 and bk.sample_rate == 0.5 and bk.epsilon <= 4.0
    for a, b, c in zip(bk.model.parameters(), ghost.model.parameters(), chunks.model.parameters()):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-6) and torch.allclose(a, c, rtol=1e-4, atol=1e-6)


def test_an_unknown_grad_sample_mode_is_refused(torch: Any) -> None:
    from privprep.transforms.train.settings import DpSgdSettings

    with pytest.raises(ValueError, match="grad_sample_mode must be one of bk, ghost, ew, hooks"):
        DpSgdSettings(target_epsilon=1.0, grad_sample_mode="fast").validate()
