"""DP-SGD at the level of people: one clipped gradient per person (the average over their rows),
Poisson sampling over people, held-out people never trained on, and the unit in the model card."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from privprep.transforms.dp import SpendLog
from privprep.transforms.train.user_level import holdout_people, people_codes
from tests.transforms.test_train import digits_table, stage


def with_people(table: pa.Table, rows_each: int) -> pa.Table:
    return table.append_column("pid", pa.array([f"u{i // rows_each}" for i in range(table.num_rows)]))


def test_each_person_gets_the_gradient_of_their_mean_loss(torch) -> None:
    """Against plain autograd: person k's gradient is d/dw mean(loss over k's rows)."""
    from opacus import GradSampleModule

    from privprep.transforms.train.dpsgd import fresh_model
    from privprep.transforms.train.user_level import person_gradients

    rng = np.random.default_rng(0)
    images = torch.from_numpy(rng.random((7, 1, 8, 8), dtype=np.float32))
    labels = torch.from_numpy(rng.integers(0, 3, 7))
    owner = torch.tensor([0, 0, 0, 1, 2, 2, 0])
    model = GradSampleModule(fresh_model((1, 8, 8), 3, seed=1), loss_reduction="sum")
    person_gradients(model, images, labels, owner, 3)
    reference = fresh_model((1, 8, 8), 3, seed=1)
    for person in range(3):
        reference.zero_grad()
        mine = owner == person
        torch.nn.functional.cross_entropy(reference(images[mine]), labels[mine]).backward()
        for (name, ours), theirs in zip(model._module.named_parameters(), reference.parameters()):
            assert torch.allclose(ours.grad_sample[person], theirs.grad, atol=1e-6), name


def test_people_are_held_out_whole() -> None:
    people = people_codes(pa.array(["a", "b", "a", None, "c", "c", "b"]))
    assert people.tolist() == [0, 1, 0, 3, 2, 2, 1]
    train, held = holdout_people(people, 0.5, np.random.default_rng(1))
    assert not set(people[train]) & set(people[held]) and len(train) + len(held) == 7


def test_user_level_training_accounts_over_people_and_reports_the_unit(torch, tmp_path: Path) -> None:
    from opacus.accountants import RDPAccountant

    table = with_people(digits_table(520, classes=3), rows_each=4)  # 130 people, 4 rows each
    log = SpendLog(epsilon=8.0)
    result = stage(classes=[0, 1, 2], target_epsilon=8.0, epochs=10, batch_size=30, seed=3, privacy_unit="pid",
                   rows_per_person=2).fit(table, account=log, model_dir=tmp_path / "model")
    card = result.card
    assert card["people"] == 130 and card["train_people"] + card["holdout_people"] == 130
    assert card["holdout_rows"] == 4 * card["holdout_people"]
    assert card["sample_rate"] == pytest.approx(30 / card["train_people"])  # people, not rows
    assert card["privacy_unit"] == "one person: every row of one 'pid' value" and card["privacy_unit_column"] == "pid"
    # the accountant's epsilon, recomputed independently from (sigma, q, steps)
    accountant = RDPAccountant()
    accountant.history = [(card["noise_multiplier"], card["sample_rate"], card["steps"])]
    from privprep.transforms.train.dpsgd import RDP_ORDERS

    assert accountant.get_epsilon(card["delta"], alphas=RDP_ORDERS) == pytest.approx(card["epsilon"], rel=1e-6)
    assert card["epsilon"] <= 8.0 and log.spent == pytest.approx(card["epsilon"])
    assert card["delta"] == 1e-3  # below 1 / 130 people
    assert card["accuracy"] > 0.5  # chance is 1/3
    assert json.loads((tmp_path / "model" / "model_card.json").read_text())["privacy_unit_column"] == "pid"


def test_a_cli_run_trains_at_the_level_of_people_on_the_pseudonymized_unit(torch, tmp_path: Path, cli) -> None:
    """End to end: the unit is pseudonymized (consistent pseudonyms keep a person's rows together), the
    train stage samples people, the card names the unit, and ε recomputed from the card matches."""
    import pyarrow.parquet as pq
    import yaml
    from opacus.accountants import RDPAccountant

    from privprep.pipeline.keys.keyring import Keyring
    from tests.transforms.test_train import DIGITS

    rows, each = 300, 3
    table = digits_table(rows).add_column(0, "pid", pa.array([f"person-{i // each:04d}" for i in range(rows)]))
    pq.write_table(table, tmp_path / "in.parquet")
    Keyring.create(tmp_path / "k.keyring")
    config = {
        "version": 1, "input": "in.parquet", "output": "out", "keyring": "k.keyring",
        "budget": {"epsilon": 4.0, "delta": 1e-3, "ledger": "l.json", "privacy_unit": "pid",
                   "max_contributions_per_partition": 2},
        "columns": {"pid": {"role": "identifier"}, "image": {"role": "insensitive", "bounds": [0, 16]},
                    "label": {"role": "insensitive", "categories": DIGITS}},
        "stages": [{"pseudonymize": {"columns": ["pid"], "domain": "people"}},
                   {"train": {"image": "image", "label": "label", "target_epsilon": 2.0, "epochs": 2, "seed": 0,
                              "accountant": "rdp"}}],
    }
    (tmp_path / "pipeline.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    result = cli("run", tmp_path / "pipeline.yaml", "--quiet")
    assert result.code == 0, result.err
    card = json.loads((tmp_path / "out" / "model" / "model_card.json").read_text())
    assert card["privacy_unit_column"] == "pid" and card["people"] == rows // each
    assert card["train_people"] + card["holdout_people"] == rows // each and card["rows_per_person_per_step"] == 2
    assert card["sample_rate"] == pytest.approx(min(1.0, card["batch_size"] / card["train_people"]))
    accountant = RDPAccountant()
    accountant.history = [(card["noise_multiplier"], card["sample_rate"], card["steps"])]
    assert accountant.get_epsilon(card["delta"]) == pytest.approx(card["epsilon_by_accountant"]["rdp"], rel=1e-6)
    assert card["epsilon"] <= 2.0 and card["chosen_settings"]["batch_size"]["source"] == "default"
    ledger = json.loads((tmp_path / "l.json").read_text())
    assert [(e["kind"], e["details"]["privacy_unit"]) for e in ledger["entries"]] == [("train", "pid")]
    for path in (tmp_path / "out").rglob("*"):
        assert not path.is_file() or b"person-" not in path.read_bytes(), path  # raw units never leave the input
