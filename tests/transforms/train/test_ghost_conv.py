"""The conv norm sampler for ghost clipping against a per-example autograd loop (tiny batches)."""

from __future__ import annotations

import warnings
from typing import Any

import pytest


@pytest.mark.parametrize("route", ["gram", "direct"])
@pytest.mark.parametrize("options", [{"padding": 1}, {"stride": 2, "padding": 2, "dilation": 2}, {"bias": False}, {"groups": 2},
                                     {"kernel_size": (2, 3), "stride": (1, 2), "padding": (0, 1)}])
def test_conv2d_norm_sample_is_the_per_example_gradient_norm(torch: Any, options: dict[str, Any], route: str,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Both routes (the input-position Gram and im2col) give each example's gradient norm, for any stride, padding, dilation."""
    from privprep.transforms.train import ghost_conv
    from privprep.transforms.train.ghost_conv import conv2d_norm_sample

    monkeypatch.setattr(ghost_conv, "gram_is_cheaper", lambda *args: route == "gram")
    options = {"kernel_size": 3, **options}
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(4, 6, **options)
    x = torch.randn(5, 4, 9, 9)
    weights = torch.randn(5, 6, 1, 1)
    expected = []
    backs = []
    for i in range(len(x)):
        o = conv(x[i:i + 1])
        loss = torch.nn.functional.cross_entropy((o * weights[i:i + 1]).sum(dim=(2, 3))[:, :2], torch.zeros(1, dtype=torch.long))
        g_out, *g_params = torch.autograd.grad(loss, [o, *conv.parameters()])
        backs.append(g_out[0])
        expected.append([g.norm() for g in g_params])
    got = conv2d_norm_sample(conv, [x.detach()], torch.stack(backs))
    for k, param in enumerate(conv.parameters()):
        assert torch.allclose(got[param], torch.stack([e[k] for e in expected]), rtol=1e-4, atol=1e-6)


def test_ghost_step_equals_the_clipped_per_example_sum(torch: Any, per_example: Any) -> None:
    """One ghost-clipping step without noise moves the weights by the mean of per-example gradients clipped to C."""
    from opacus import PrivacyEngine

    from privprep.transforms.train.dpsgd import _pass_through, _Rows
    from privprep.transforms.train.ghost_conv import conv2d_norm_sample, use_on

    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.GroupNorm(1, 2, affine=False), torch.nn.Conv2d(2, 3, 3, padding=1), torch.nn.Tanh(),
                                torch.nn.Conv2d(3, 4, 3, stride=2), torch.nn.Tanh(), torch.nn.Flatten(), torch.nn.Linear(16, 3))
    x, y = torch.randn(6, 2, 6, 6), torch.tensor([0, 1, 2, 0, 1, 2])
    clip = 0.05
    grads = per_example(model, x, y)
    before = [p.detach().clone() for p in model.parameters()]
    factors = [min(1.0, clip / (float(torch.sqrt(sum((g ** 2).sum() for g in gs))) + 1e-6)) for gs in grads]
    assert max(factors) < 1.0  # every example is clipped
    expected = [b - sum(f * gs[k] for f, gs in zip(factors, grads)) / len(x) for k, b in enumerate(before)]
    loader = torch.utils.data.DataLoader(_Rows(x, y), batch_size=len(x), collate_fn=_pass_through)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore")
        private, optimizer, criterion, _ = PrivacyEngine().make_private(
            module=model, optimizer=torch.optim.SGD(model.parameters(), lr=1.0), data_loader=loader,
            criterion=torch.nn.CrossEntropyLoss(), noise_multiplier=0.0, max_grad_norm=clip, poisson_sampling=False,
            grad_sample_mode="ghost",
        )
        use_on(private)
        assert private.NORM_SAMPLERS[torch.nn.Conv2d] is conv2d_norm_sample
        assert type(private).NORM_SAMPLERS.get(torch.nn.Conv2d) is not conv2d_norm_sample  # this module only, not Opacus' table
        optimizer.zero_grad()
        criterion(private(x), y).backward()
        optimizer.step()
    for got, want in zip(model.parameters(), expected):
        assert torch.allclose(got, want, rtol=1e-4, atol=1e-6)


def test_the_cost_rule_picks_the_gram_route_for_many_channels_on_small_maps(torch: Any) -> None:
    """The ScatterNet head's first layer (81 channels of 7×7) takes the Gram route, the pixel CNN's 8×8 first layer im2col."""
    from privprep.transforms.train.ghost_conv import gram_is_cheaper

    nn = torch.nn
    assert gram_is_cheaper(nn.Conv2d(81, 32, 3, padding=1), (1, 81, 7, 7), (1, 32, 7, 7))
    assert gram_is_cheaper(nn.Conv2d(32, 32, 3, padding=1), (1, 32, 6, 6), (1, 32, 6, 6))
    assert not gram_is_cheaper(nn.Conv2d(1, 16, 8, stride=2, padding=2), (1, 1, 28, 28), (1, 16, 13, 13))
    assert not gram_is_cheaper(nn.Conv2d(1, 16, 3, padding=1), (1, 1, 8, 8), (1, 16, 8, 8))
