"""The ScatterNet models, exact accounting for every choice (ε recomputed from the card with Opacus'
own accountants), Opacus' BatchMemoryManager for large logical batches, features computed once, and a
warning where the budget buys a near-random model. Small digits data; torch.set_num_threads(1)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import yaml

from privprep.transforms.dp import SpendLog
from privprep.transforms.train import Train, load_model

DIGITS = list(range(10))


@pytest.fixture
def kymatio():
    return pytest.importorskip("kymatio")


def digits_table(rows: int, *, seed: int = 0) -> pa.Table:
    from sklearn.datasets import load_digits

    data = load_digits()
    pick = np.random.default_rng(seed).permutation(len(data.target))[:rows]
    return pa.table({"image": pa.FixedSizeListArray.from_arrays(pa.array(data.data[pick].astype(np.uint8).ravel()), 64),
                     "label": pa.array(data.target[pick], pa.int64())})


def fit(rows: int = 300, model_dir: Path | None = None, **params):
    stage = Train(image="image", label="label", classes=DIGITS, seed=0, **{"target_epsilon": 2.0, "epochs": 2, "model": "cnn", **params})
    return stage.fit(digits_table(rows), account=SpendLog(), model_dir=model_dir)


def recomputed(card: dict) -> dict[str, float]:
    """ε of the card's (σ, q, steps) under Opacus' PRV and RDP accountants, computed here from those three numbers."""
    from opacus.accountants import PRVAccountant, RDPAccountant

    from privprep.transforms.train.dpsgd import RDP_ORDERS

    out = {}
    for name, accountant, extra in (("prv", PRVAccountant(), {}), ("rdp", RDPAccountant(), {"alphas": RDP_ORDERS})):
        accountant.history = [(card["noise_multiplier"], card["sample_rate"], card["steps"])]
        out[name] = accountant.get_epsilon(card["delta"], **extra)
    return out


@pytest.mark.parametrize("model", ["cnn", "scatter_linear", "scatter_cnn"])
def test_epsilon_recomputed_from_the_cards_rate_noise_and_steps_matches_the_card(torch, kymatio, model) -> None:
    card = fit(model=model).card
    # 300 rows, 20% held out: 240 training rows; default batch: 240/16 = 15 -> 16 (cnn), clipped up to 64 (scatter)
    batch = 16 if model == "cnn" else 64
    assert card["batch_size"] == batch and card["sample_rate"] == 1 / -(-240 // batch)
    assert card["steps"] == int(2 / card["sample_rate"])
    again = recomputed(card)
    assert again["prv"] == pytest.approx(card["epsilon_by_accountant"]["prv"], rel=1e-9)
    assert again["rdp"] == pytest.approx(card["epsilon_by_accountant"]["rdp"], rel=1e-9)
    assert card["epsilon"] == card["epsilon_by_accountant"]["prv"] and 2.0 - 0.05 <= card["epsilon"] <= 2.0
    chosen = card["chosen_settings"]
    assert chosen["epochs"]["source"] == "config" and chosen["batch_size"]["source"] == "default"
    assert chosen["noise_multiplier"] == {"value": card["noise_multiplier"], "source": "budget",
                                          "reason": chosen["noise_multiplier"]["reason"]}
    assert f"{card['steps']} steps" in chosen["noise_multiplier"]["reason"]


def test_a_large_logical_batch_in_physical_chunks_keeps_the_rate_the_noise_and_the_steps(torch) -> None:
    from privprep.transforms.train.data import examples_from_table
    from privprep.transforms.train.dpsgd import train_dp
    from privprep.transforms.train.settings import DpSgdSettings

    ex = examples_from_table(digits_table(400), image="image", label="label", classes=DIGITS, pixel_range=(0, 16))
    train, held = ex.take(np.arange(320)), ex.take(np.arange(320, 400))
    settings = DpSgdSettings(target_epsilon=3.0, delta=1e-3, epochs=2, batch_size=160, seed=0)
    whole = train_dp(train, held, settings, classes=10)
    chunks = train_dp(train, held, settings.replace(physical_batch_size=32), classes=10)
    assert whole.sample_rate == chunks.sample_rate == 0.5 and whole.steps == chunks.steps == 4   # 2 epochs / q
    assert whole.noise_multiplier == chunks.noise_multiplier and whole.epsilons == chunks.epsilons


def test_scatter_features_are_computed_once_per_dataset_not_per_step(torch, kymatio, monkeypatch) -> None:
    from privprep.transforms.train import scatter

    calls = []
    original = scatter.scatter_features
    monkeypatch.setattr(scatter, "scatter_features", lambda images, **kw: calls.append(len(images)) or original(images, **kw))
    card = fit(model="scatter_linear", epochs=3).card
    assert card["steps"] == 3 * 4 and calls == [240, 60]         # 12 steps; features of the train and held-out rows once


def test_a_scatter_model_reloads_and_classifies_raw_images(torch, kymatio, tmp_path: Path) -> None:
    result = fit(model="scatter_linear", model_dir=tmp_path / "model")
    card = json.loads((tmp_path / "model" / "model_card.json").read_text())
    assert card["model"]["architecture"] == "scatter-linear/1" and card["model"]["scattering"]["features"] == [9, 4, 4]
    assert card["model"]["parameters"] == 9 * 4 * 4 * 10 + 10 and card["grad_sample_mode"] == "bk"
    model = load_model(tmp_path / "model")
    images = torch.rand(5, 1, 8, 8) * 2 - 1
    with torch.no_grad():
        assert torch.equal(model(images), result.model(images))
    from privprep.transforms.train.scatter import scatter_features

    with torch.no_grad():
        head = model.head(torch.from_numpy(scatter_features(images.numpy())))
    assert torch.allclose(model(images), head)


def test_the_cnn_standardizes_each_image_so_the_declared_pixel_range_does_not_matter(torch) -> None:
    wide = fit(pixel_range=(0, 255)).card      # a uint8 column without bounds: 0..16 pixels scaled from 0..255
    narrow = fit(pixel_range=(0, 16)).card
    assert wide["model"]["architecture"] == "cnn-tanh/2"
    assert abs(wide["accuracy"] - narrow["accuracy"]) < 0.05


def test_an_old_card_without_standardization_still_reloads(torch) -> None:
    from privprep.transforms.train.model import SmallCNN, model_from_spec

    old = model_from_spec({"architecture": "cnn-tanh/1", "input_shape": [1, 8, 8], "outputs": 10}, classes=10)
    assert isinstance(old, SmallCNN) and not any(isinstance(m, torch.nn.GroupNorm) for m in old.modules())


def test_a_budget_that_buys_a_near_random_model_is_a_warning_in_the_card_report_json_and_html(torch, tmp_path: Path, cli) -> None:
    import pyarrow.parquet as pq

    pq.write_table(digits_table(300), tmp_path / "in.parquet")
    config = {
        "version": 1, "input": "in.parquet", "output": "out",
        "budget": {"epsilon": 1.0, "delta": 1e-3, "ledger": "ledgers/digits.json"},
        "columns": {"image": {"role": "insensitive"}, "label": {"role": "insensitive", "categories": DIGITS}},
        "stages": [{"train": {"model": "cnn", "image": "image", "label": "label", "target_epsilon": 0.01, "epochs": 2, "seed": 0}}],
    }
    (tmp_path / "pipeline.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    result = cli("run", tmp_path / "pipeline.yaml", "--quiet")
    assert result.code == 0, result.err
    card = json.loads((tmp_path / "out" / "model" / "model_card.json").read_text())
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert card["accuracy"] < 0.55 and len(card["warnings"]) == 1 and "close to chance" in card["warnings"][0]
    assert report["stages"][-1]["warnings"] == card["warnings"] and card["warnings"][0] in report["warnings"]
    html = (tmp_path / "out" / "report.html").read_text()
    assert "close to chance" in html and "Settings" in html


@pytest.mark.parametrize("shape", [(1, 9, 9), (1, 30, 17), (3, 12, 12)])
def test_scatter_feature_shapes_match_the_transform_for_odd_and_rectangular_images(torch, kymatio, shape) -> None:
    """The features' shape (what the head is built for) is kymatio's: floor(side / 2^J), also for odd sides."""
    from privprep.transforms.train.model import build_model
    from privprep.transforms.train.scatter import scatter_features

    model = build_model("scatter_linear", shape, classes=3)
    images = np.random.default_rng(0).random((4, *shape), dtype=np.float32)
    features = scatter_features(images, scale=model.scale)
    assert features.shape == (4, *model.feature_shape)
    assert model(torch.from_numpy(images)).shape == (4, 3)
