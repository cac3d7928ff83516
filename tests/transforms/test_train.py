"""The DP-SGD ``train`` stage: budget checked before and spent after, ε within the target, a model that
learns, reproducible on CPU, and one-line errors for bad data and configs.

Tests that train need torch (the ``train`` extra) and skip without it; the data and config checks run
on the core install too."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from privprep.pipeline.budget.ledger import Ledger
from privprep.schemas.errors import BudgetError, ConfigError, DataError
from privprep.transforms import registry
from privprep.transforms.dp import SpendLog
from privprep.transforms.train import Train, default_delta
from privprep.transforms.train.card import model_card_keys

DIGITS = list(range(10))


def digits_table(rows: int, *, classes: int = 10, seed: int = 0) -> pa.Table:
    """Rows of scikit-learn's 8×8 digits (pixels 0..16) of the first ``classes`` classes, shuffled."""
    from sklearn.datasets import load_digits

    data = load_digits()
    keep = np.flatnonzero(data.target < classes)
    pick = np.random.default_rng(seed).permutation(keep)[:rows]
    images = data.data[pick].astype(np.uint8)
    return pa.table({
        "image": pa.FixedSizeListArray.from_arrays(pa.array(images.ravel()), 64),
        "label": pa.array(data.target[pick], pa.int64()),
    })


def stage(**overrides) -> Train:
    params = dict(image="image", label="label", classes=DIGITS, target_epsilon=2.0, epochs=2, seed=0,
                  pixel_range=(0, 16), accountant="rdp", model="cnn")
    params.update(overrides)
    return Train(**params)


# -- the privacy budget ------------------------------------------------------------------------------


def test_epsilon_spent_is_at_most_the_target_and_recorded_in_the_ledger(torch, tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.json", epsilon=4.0, delta=1e-3, fingerprint="sha256:digits")
    scope = ledger.scope(stage="stages[1].train", kind="train")
    result = stage(accountant="prv", target_epsilon=2.0, epochs=2, batch_size=32).fit(digits_table(400), account=scope)
    card = result.card
    # Opacus picks the noise by binary search to within 0.01 below the target, against PRV's upper bound
    assert 2.0 - 0.05 <= card["epsilon"] <= 2.0
    assert card["epsilon"] == card["epsilon_by_accountant"]["prv"] < card["epsilon_by_accountant"]["rdp"]
    assert card["delta"] == default_delta(400) == 1e-3 and card["delta"] < 1 / card["rows"]
    assert card["sample_rate"] == 0.1 and card["steps"] == 20   # q = 1 / ceil(320 / 32), 2 epochs
    recorded = json.loads((tmp_path / "ledger.json").read_text())["entries"]
    assert [(e["stage"], e["kind"], e["epsilon"], e["delta"]) for e in recorded] == [
        ("stages[1].train", "train", card["epsilon"], card["delta"])
    ]
    assert scope.recorded and recorded[0]["details"]["noise_multiplier"] == card["noise_multiplier"]


@pytest.mark.parametrize(("sigma", "epochs", "published"), [(1.12, 60, 2.92), (1.2, 10, 1.20)])
def test_the_accountants_agree_with_tf_privacy_s_published_mnist_table(torch, sigma, epochs, published) -> None:
    from opacus.accountants.analysis.rdp import compute_rdp

    from privprep.transforms.train.dpsgd import _epsilons

    # TF Privacy's tutorials/README: batch 256 of 60,000, delta 1e-5, RDP with the classic conversion
    # eps = min over orders of rdp - log(delta) / (order - 1)
    q, steps, orders = 256 / 60000, epochs * 60000 // 256, np.array([1 + x / 10 for x in range(1, 100)] + list(range(12, 64)))
    classic = float(np.min(compute_rdp(q=q, noise_multiplier=sigma, steps=steps, orders=orders) - np.log(1e-5) / (orders - 1)))
    assert classic == pytest.approx(published, abs=0.01)
    reported = _epsilons([(sigma, q, steps)], 1e-5)
    assert reported["prv"] < reported["rdp"] <= classic  # tighter conversion, tighter accountant


def test_a_target_over_the_remaining_budget_is_refused_before_training(tmp_path: Path, monkeypatch) -> None:
    ledger = Ledger(tmp_path / "ledger.json", epsilon=3.0, delta=1e-3, fingerprint="sha256:digits")
    ledger.spend(1.5, stage="stages[0].dp_stats", kind="dp_stats")
    monkeypatch.setitem(sys.modules, "privprep.transforms.train.dpsgd", None)  # any attempt to train fails loudly
    with pytest.raises(BudgetError, match=r"only 1\.5 of budget.epsilon 3 remains"):
        stage(target_epsilon=2.0).fit(digits_table(100), account=ledger.scope(stage="stages[1].train", kind="train"))
    assert len(json.loads((tmp_path / "ledger.json").read_text())["entries"]) == 1
    with pytest.raises(BudgetError, match="only 1 remains"):
        stage(target_epsilon=2.0).fit(digits_table(100), account=SpendLog(epsilon=1.0))


def test_default_delta_is_below_one_over_rows_and_at_most_the_budget_delta(torch) -> None:
    assert [default_delta(n) for n in (1, 9, 10, 2945, 60000, 100000)] == [0.1, 0.1, 0.01, 1e-4, 1e-5, 1e-6]
    ledger = Ledger(None, epsilon=10.0, delta=1e-5)
    card = stage(epochs=1).fit(digits_table(200), account=ledger.scope(stage="t", kind="train")).card
    assert card["delta"] == 1e-5 and card["delta_source"].startswith("budget.delta")


# -- learning and reproducibility --------------------------------------------------------------------


def test_a_tiny_dataset_trains_to_clearly_above_chance(torch) -> None:
    log = SpendLog(epsilon=8.0)
    result = stage(classes=[0, 1, 2], target_epsilon=8.0, epochs=15, batch_size=64, seed=3).fit(
        digits_table(500, classes=3), account=log
    )
    assert result.card["holdout_rows"] == 100 and result.card["train_rows"] == 400
    assert result.card["accuracy"] >= 0.8  # chance is 1/3
    assert log.spent == pytest.approx(result.card["epsilon"])


def test_training_is_reproducible_with_a_seed_on_cpu(torch, tmp_path: Path) -> None:
    table = digits_table(200)
    runs = [stage(epochs=1, device="cpu").fit(table, account=SpendLog(), model_dir=tmp_path / f"m{i}") for i in (0, 1)]
    for name, weights in runs[0].model.state_dict().items():
        assert torch.equal(weights, runs[1].model.state_dict()[name])
    cards = [json.loads((tmp_path / f"m{i}" / "model_card.json").read_text()) for i in (0, 1)]
    assert cards[0] == cards[1] and cards[0]["seed"] == 0
    assert (tmp_path / "m0" / "weights.pt").read_bytes() == (tmp_path / "m1" / "weights.pt").read_bytes()


def test_the_step_count_is_the_one_the_noise_was_calibrated_for(torch) -> None:
    # 75 batches per epoch, 3 epochs: Opacus calibrates sigma for int(3 / (1 / 75)) = 224 steps (float
    # rounding), while three passes of its data loader would take 225; the stage runs exactly 224
    assert int(3 / (1 / 75)) == 224
    result = stage(batch_size=1, epochs=3, holdout=0.25, classes=[0, 1, 2]).fit(
        digits_table(100, classes=3), account=SpendLog()
    )
    card = result.card
    assert card["train_rows"] == 75 and card["sample_rate"] == 1 / 75 and card["steps"] == 224
    assert card["epsilon"] <= 2.0


def test_empty_poisson_batches_still_take_a_noisy_step(torch) -> None:
    # 12 rows, 10 train rows at q = 0.1: about a third of the Poisson batches are empty
    result = stage(batch_size=1, epochs=3, classes=[0, 1, 2], target_epsilon=5.0).fit(
        digits_table(12, classes=3), account=SpendLog()
    )
    assert result.card["steps"] == 30 and result.card["sample_rate"] == 0.1
    assert all(bool(torch.isfinite(p).all()) for p in result.model.parameters())


def test_the_model_folder_reloads_and_the_model_passes_opacus_validation(torch, tmp_path: Path) -> None:
    from opacus.validators import ModuleValidator

    from privprep.transforms.train import load_model

    result = stage(epochs=1).fit(digits_table(200), account=SpendLog(), model_dir=tmp_path / "model")
    model = load_model(tmp_path / "model")
    assert not model.training and ModuleValidator.is_valid(load_model(tmp_path / "model").train())
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())
    assert any(isinstance(m, torch.nn.Tanh) for m in model.modules())
    x = torch.zeros(3, 1, 8, 8)
    assert torch.equal(model(x), result.model(x))
    card = json.loads((tmp_path / "model" / "model_card.json").read_text())
    assert set(model_card_keys()) | {"seed", "versions"} <= set(card)
    assert card["versions"]["torch"] and card["versions"]["opacus"]


def test_mnist_sized_images_get_the_strided_network(torch) -> None:
    from privprep.transforms.train.model import build_cnn

    net = build_cnn((1, 28, 28), classes=10)
    assert sum(p.numel() for p in net.parameters()) == 26010  # Papernot et al.'s MNIST CNN
    assert net(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


# -- bad data: one clear line, never a cell value ----------------------------------------------------


@pytest.mark.parametrize("missing", ["image", "label"])
def test_a_missing_column_is_a_data_error(missing: str) -> None:
    table = digits_table(50).drop_columns([missing])
    with pytest.raises(DataError, match=f"column\\(s\\) not in the data: {missing}"):
        stage().fit(table, account=SpendLog())


def test_ragged_image_arrays_are_a_data_error() -> None:
    table = pa.table({"image": pa.array([[1] * 64, [1] * 64, [1] * 63], pa.list_(pa.uint8())), "label": [0, 1, 2]})
    with pytest.raises(DataError, match="image column 'image' is ragged: its arrays have 63 to 64 values"):
        stage().fit(table, account=SpendLog())


def test_labels_outside_the_declared_categories_are_a_data_error() -> None:
    table = digits_table(50)
    table = table.set_column(1, "label", pa.array([11, 12] + table.column("label").to_pylist()[2:], pa.int64()))
    with pytest.raises(DataError, match="label column 'label' has 2 row\\(s\\) with a label outside its 10 declared") as err:
        stage().fit(table, account=SpendLog())
    assert "11" not in str(err.value) and "12" not in str(err.value)


@pytest.mark.parametrize(
    ("image", "label", "message"),
    [
        (pa.array([[1] * 64, None], pa.list_(pa.uint8(), 64)), [0, 1], "1 missing image"),
        (pa.array([[1] * 64] * 2, pa.list_(pa.uint8(), 64)), [0, None], "1 missing label"),
        (pa.array([[1] * 60] * 2, pa.list_(pa.uint8(), 60)), [0, 1], "60 values per row, which is not a square image"),
        (pa.array(["x", "y"]), [0, 1], "it must hold one array of pixel values per row"),
        (pa.array([["a"] * 64] * 2, pa.list_(pa.string(), 64)), [0, 1], "pixels must be numbers"),
    ],
)
def test_other_bad_columns_are_data_errors(image: pa.Array, label: list, message: str) -> None:
    with pytest.raises(DataError, match=message):
        stage().fit(pa.table({"image": image, "label": pa.array(label, pa.int64())}), account=SpendLog())


def test_image_shape_must_match_and_nested_arrays_give_their_shape() -> None:
    from privprep.transforms.train.data import examples_from_table

    flat = pa.table({"image": pa.array([[0] * 60] * 2, pa.list_(pa.uint8(), 60)), "label": [0, 1]})
    ok = examples_from_table(flat, image="image", label="label", classes=[0, 1], image_shape=[3, 4, 5])
    assert ok.images.shape == (2, 3, 4, 5) and float(ok.images.min()) == -1.0
    with pytest.raises(DataError, match="image_shape \\[8, 8\\] needs 64"):
        examples_from_table(flat, image="image", label="label", classes=[0, 1], image_shape=[8, 8])
    nested = pa.table({"image": [[[0, 255]] * 3] * 2, "label": [1, 0]})  # list<list<int64>>: 3×2 images
    with pytest.raises(DataError, match="no declared range; add bounds"):
        examples_from_table(nested, image="image", label="label", classes=[0, 1])
    ex = examples_from_table(nested, image="image", label="label", classes=[0, 1], pixel_range=(0, 255))
    assert ex.images.shape == (2, 1, 3, 2) and ex.labels.tolist() == [1, 0]


def test_parameters_are_validated_in_one_line() -> None:
    with pytest.raises(ConfigError, match="target_epsilon"):
        stage(target_epsilon=0)
    with pytest.raises(ConfigError, match="at least 2 distinct declared categories"):
        stage(classes=[1])
    with pytest.raises(ConfigError, match="pass account="):
        stage().fit(digits_table(20), account=None)


# -- the pipeline: config, CLI, run directory ------------------------------------------------------


def train_workspace(tmp_path: Path, *, rows: int = 300, budget_epsilon: float = 4.0, train: dict | None = None,
                    label: dict | None = None) -> tuple[Path, Path]:
    table = digits_table(rows)
    table = table.add_column(0, "patient_id", pa.array([f"P{i}" for i in range(rows)]))
    pq.write_table(table, tmp_path / "in.parquet")
    config = {
        "version": 1, "input": "in.parquet", "output": "out",
        "budget": {"epsilon": budget_epsilon, "delta": 1e-3, "ledger": "ledgers/digits.json"},
        "columns": {
            "patient_id": {"role": "identifier"},
            "image": {"role": "insensitive", "bounds": [0, 16]},
            "label": label or {"role": "insensitive", "categories": DIGITS},
        },
        "stages": [
            {"drop": {"columns": ["patient_id"]}},
            {"train": {"model": "cnn", "image": "image", "label": "label", "target_epsilon": 2.0, "epochs": 2,
                       "seed": 0, **(train or {})}},
        ],
    }
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path, tmp_path / "ledgers" / "digits.json"


def test_a_pipeline_run_writes_the_model_folder_the_report_entry_and_the_ledger(torch, tmp_path: Path, cli) -> None:
    config, ledger_path = train_workspace(tmp_path)
    result = cli("run", config, "--quiet")
    assert result.code == 0, result.err
    card = json.loads((tmp_path / "out" / "model" / "model_card.json").read_text())
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    entry = report["stages"][-1]
    assert entry["name"] == "train" and entry["kind"] == "sink"
    for key in model_card_keys() + ["seed", "versions"]:
        assert entry[key] == card[key], key
    assert card["accountant"] == "prv" and card["epsilon"] <= 2.0 and card["delta"] == 1e-3
    assert card["rows"] == 300 and card["epochs"] == 2
    ledger = json.loads(ledger_path.read_text())
    assert [(e["kind"], e["epsilon"], e["delta"]) for e in ledger["entries"]] == [("train", card["epsilon"], 1e-3)]
    assert report["budget"]["spent_this_run"] == card["epsilon"]
    assert (tmp_path / "out" / "model" / "weights.pt").stat().st_size > 10_000


def test_a_run_over_the_remaining_budget_exits_1_before_reading_data(torch, tmp_path: Path, cli) -> None:
    from privprep.pipeline.api import plan as make_plan

    config, ledger_path = train_workspace(tmp_path)
    make_plan(config).ledger.spend(3.0, stage="earlier", kind="dp_stats")  # an earlier release on this dataset
    result = cli("run", config, "--quiet")
    assert result.code == 1
    assert "budget exceeded" in result.err and len(result.err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()
    assert len(json.loads(ledger_path.read_text())["entries"]) == 1


def test_a_label_without_declared_categories_is_a_config_error(torch, tmp_path: Path, cli) -> None:
    config, _ = train_workspace(tmp_path, label={"role": "insensitive"})
    result = cli("run", config, "--dry-run")
    assert result.code == 2
    assert "stages[1].train: label column 'label' needs declared categories" in result.err


def test_a_train_stage_without_the_extra_is_a_one_line_config_error(tmp_path: Path, cli, monkeypatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in ("torch", "opacus") else real(name, *a))
    config, _ = train_workspace(tmp_path)
    result = cli("run", config, "--dry-run")
    assert result.code == 2
    assert result.err.strip().count("\n") == 0
    assert "stages[1].train: stage 'train' needs torch and opacus" in result.err and "pip install torch==2.13.0" in result.err


def test_registry_and_import_do_not_need_torch() -> None:
    import subprocess

    code = "import sys, privprep.transforms.train; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"
    assert registry.get("train") is Train
