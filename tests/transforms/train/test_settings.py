"""One DP-SGD settings model: the defaults chosen from the rows (worked out by hand from the rule in
``transforms/train/settings.py``), one list of accountants and models, parameters kept as given and
validated once. No torch needed."""

from __future__ import annotations

import dataclasses

import pytest

from privprep.schemas import stages
from privprep.schemas.errors import ConfigError
from privprep.schemas.stages import DpSgdParams, TrainParams
from privprep.transforms.federated.settings import FederatedSettings
from privprep.transforms.train import Train
from privprep.transforms.train.settings import CHOSEN, DpSgdSettings, choose_settings


@pytest.mark.parametrize(("rows", "model", "epsilon", "expected"), [
    # rows / 16 -> nearest power of two, clipped: 3200/16 = 200 -> 256; 1067/16 = 67 -> 64; 60000/16 = 3750 -> 4096
    (3200, "cnn", 3.0, (256, 20, 1.0, 1.0, 0.0)),
    (1067, "cnn", 8.0, (64, 20, 1.0, 1.0, 0.0)),
    (100, "cnn", 3.0, (16, 20, 1.0, 1.0, 0.0)),            # 100/16 = 6.25 -> 8, clipped up to 16
    (60000, "cnn", 1.0, (256, 10, 0.5, 1.0, 0.0)),         # capped at 256; more than 10,000 rows at eps < 2
    (60000, "cnn", 3.0, (256, 20, 0.5, 1.0, 0.0)),
    (60000, "scatter_linear", 3.0, (4096, 40, 4.0, 0.1, 0.9)),
    (60000, "scatter_linear", 1.0, (4096, 20, 4.0, 0.1, 0.9)),
    (3200, "scatter_cnn", 3.0, (256, 40, 1.0, 0.1, 0.9)),
    (32000, "scatter_cnn", 3.0, (2048, 40, 2.0, 0.1, 0.9)),     # lr = batch / 1024 within 1..4
    (60000, "scatter_cnn", 1.0, (4096, 20, 4.0, 0.1, 0.9)),
    (200_000, "scatter_linear", 3.0, (4096, 40, 4.0, 0.1, 0.9)),  # 12500 -> 16384, capped at 4096
])
def test_defaults_are_chosen_from_the_rows_epsilon_and_model(rows, model, epsilon, expected) -> None:
    values, why = choose_settings(rows=rows, target_epsilon=epsilon, model=model, given={})
    assert tuple(values[k] for k in CHOSEN) == expected
    assert set(why) == set(CHOSEN) and all(why.values())


def test_given_settings_are_kept_and_not_explained() -> None:
    values, why = choose_settings(rows=3200, target_epsilon=3.0, model="cnn", given={"batch_size": 100, "epochs": None})
    assert values["batch_size"] == 100 and values["epochs"] == 20
    assert "batch_size" not in why and "epochs" in why


def test_one_list_of_accountants_and_models_and_one_params_model() -> None:
    from privprep.transforms.federated import accounting
    from privprep.transforms.train import settings

    assert accounting.ACCOUNTANTS is settings.ACCOUNTANTS is stages.ACCOUNTANTS == ("prv", "rdp")
    assert settings.MODELS is stages.MODELS
    assert issubclass(TrainParams, DpSgdParams) and issubclass(FederatedSettings, DpSgdSettings)
    shared = set(DpSgdParams.model_fields)
    assert shared <= {f.name for f in dataclasses.fields(FederatedSettings)}
    assert DpSgdSettings(target_epsilon=1.0).batch_size == FederatedSettings(rounds=1, local_epochs=1, target_epsilon=1.0).batch_size


def test_settings_keep_values_as_given_and_validate_once_with_the_config_rules() -> None:
    bad = DpSgdSettings(target_epsilon=1.0, delta=1e-5, learning_rate=-1.0, accountant="gdp")  # constructing checks nothing
    assert bad.learning_rate == -1.0
    with pytest.raises(ValueError, match="learning_rate") as info:
        bad.validate()
    assert "accountant" in str(info.value)
    with pytest.raises(ValueError, match="rounds and local_epochs"):
        FederatedSettings(rounds=0, local_epochs=1, target_epsilon=1.0).validate()
    assert DpSgdSettings(target_epsilon=1.0, delta=1e-5).validate().target_epsilon == 1.0


def test_the_stage_keeps_its_parameters_as_given(monkeypatch) -> None:
    stage = Train(image="image", label="label", classes=[0, 1], target_epsilon=2.0, batch_size=32)
    assert stage.params.batch_size == 32 and stage.params.epochs is None and stage.params.momentum is None
    assert repr(stage) == "Train(image='image', label='label', target_epsilon=2.0, batch_size=32, accountant='prv', holdout=0.2)"
    with pytest.raises(ConfigError, match="model"):
        Train(image="image", label="label", classes=[0, 1], target_epsilon=2.0, model="resnet")


def test_from_config_does_not_validate_the_params_again(monkeypatch) -> None:
    from types import SimpleNamespace

    from privprep.transforms.train import stage as stage_module

    params = TrainParams(image="image", label="label", target_epsilon=2.0)
    calls = []
    monkeypatch.setattr(stage_module, "TrainParams", lambda **kw: calls.append(kw))
    monkeypatch.setattr(stage_module, "require_training_extra", lambda: None)
    columns = {"label": SimpleNamespace(categories=[0, 1]), "image": SimpleNamespace(bounds=[0, 16])}
    built = Train.from_config(params, context=SimpleNamespace(columns=columns, path="stages[0].train"))
    assert built.params is params and calls == [] and built.pixel_range == (0.0, 16.0)


def test_a_left_out_model_is_chosen_from_the_images_the_rows_and_what_is_installed() -> None:
    """scatter_linear where it fits (8x8 and up, features within 4 GiB, kymatio there), else cnn; a given model stays."""
    from privprep.transforms.train.settings import SCATTER_FEATURE_BYTES, choose_model

    assert choose_model(shape=(1, 28, 28), rows=70_000, given=None)[0] == "scatter_linear"   # 81x7x7 features: 1.0 GiB
    assert choose_model(shape=(1, 8, 8), rows=4_000, given=None)[0] == "scatter_linear"      # 9x4x4
    per_row = 81 * 7 * 7 * 4
    fits = SCATTER_FEATURE_BYTES // per_row
    assert choose_model(shape=(1, 28, 28), rows=fits, given=None)[0] == "scatter_linear"
    model, why = choose_model(shape=(1, 28, 28), rows=fits + 1, given=None)
    assert model == "cnn" and "GiB in memory" in why
    model, why = choose_model(shape=(1, 6, 6), rows=100, given=None)
    assert model == "cnn" and "6x6" in why
    model, why = choose_model(shape=(1, 28, 28), rows=100, given=None, scatter_available=False)
    assert model == "cnn" and "kymatio" in why
    assert choose_model(shape=(1, 28, 28), rows=100, given="scatter_cnn") == ("scatter_cnn", None)
