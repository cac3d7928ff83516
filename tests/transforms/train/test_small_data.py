"""Small data with only ``target_epsilon`` given: 4,000 rows of the bundled sample (8×8 digits, 0…16), no
pixel bounds declared (a uint8 column, so scaled from 0…255, as a new user's config has it), ε = 3,
δ = 1e-5. Before the defaults adapted and the CNN standardized each image this gave 47.8%
(issue #21); the requirement is at least 85% held-out."""

from __future__ import annotations

import pytest

from privprep.pipeline.files.sample import generate_sample
from privprep.transforms.dp import SpendLog
from privprep.transforms.train import Train


@pytest.mark.slow
def test_only_target_epsilon_on_4000_sample_rows_reaches_85_percent_and_says_what_it_chose() -> None:
    torch = pytest.importorskip("torch")
    pytest.importorskip("opacus")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        table = generate_sample(4000, seed=0).select(["image", "label"])
        stage = Train(image="image", label="label", classes=list(range(10)), target_epsilon=3.0, delta=1e-5, seed=0)
        card = stage.fit(table, account=SpendLog(epsilon=3.0)).card
    finally:
        torch.set_num_threads(before)
    assert card["accuracy"] >= 0.85 and card["warnings"] == []
    assert card["train_rows"] == 3200 and card["epsilon"] <= 3.0
    # 3200 / 16 = 200 -> batch 256, q = 1 / ceil(3200 / 256) = 1/13, 20 epochs -> int(20 * 13) = 260 steps
    assert (card["batch_size"], card["epochs"], card["steps"], card["sample_rate"]) == (256, 20, 260, 1 / 13)
    assert {k: v["source"] for k, v in card["chosen_settings"].items()} == {
        "batch_size": "default", "epochs": "default", "learning_rate": "default", "max_grad_norm": "default",
        "momentum": "default", "noise_multiplier": "budget"}
