"""The typed schema of the training config: its choices are the code's, and it types every shipped file."""

from __future__ import annotations

import pytest
import yaml
from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf
from omegaconf.errors import ConfigKeyError, ValidationError

from rsneo.data.frames import BAND_GROUPS, DEFAULT_BAND_GROUPS
from rsneo.model.masks import BACKENDS
from rsneo.train.config import CONFIG_DIR
from rsneo.train.schema import (
    AttnBackend,
    BandGroups,
    DataConfig,
    ModelConfig,
    ObjectivesConfig,
    StageConfig,
    TrainConfig,
    TrainerConfig,
    register,
)

SECTIONS = {
    "model": ModelConfig,
    "data": DataConfig,
    "stage": StageConfig,
    "objectives": ObjectivesConfig,
    "trainer": TrainerConfig,
    "experiment": TrainConfig,  # `# @package _global_`: the whole run
}


def test_choices_are_the_ones_the_model_and_the_data_code_accept():
    assert [b.value for b in AttnBackend] == list(BACKENDS)
    assert [b.value for b in BandGroups] == list(BAND_GROUPS)
    assert DataConfig.band_groups == DEFAULT_BAND_GROUPS and ModelConfig.attn_backend == "auto"


def test_registered_as_the_first_default_of_train_yaml():
    register()
    assert ConfigStore.instance().load("train_schema.yaml").node._metadata.object_type is TrainConfig
    assert yaml.safe_load((CONFIG_DIR / "train.yaml").read_text())["defaults"][0] == "train_schema"


@pytest.mark.parametrize("group", sorted(SECTIONS))
def test_every_key_of_every_shipped_file_is_declared_with_its_type(group):
    files = sorted((CONFIG_DIR / group).glob("*.yaml"))
    assert files
    for path in files:
        values = {k: v for k, v in (yaml.safe_load(path.read_text()) or {}).items() if k != "defaults"}
        OmegaConf.merge(OmegaConf.structured(SECTIONS[group]), values)  # raises on a stray key or type


def test_a_stray_key_or_a_wrong_type_in_a_section_is_refused():
    with pytest.raises(ConfigKeyError, match="Key 'max_stepz' not in 'TrainerConfig'"):
        OmegaConf.merge(OmegaConf.structured(TrainerConfig), {"max_stepz": 5})
    with pytest.raises(ValidationError, match="Invalid value 'flax'"):
        OmegaConf.merge(OmegaConf.structured(ModelConfig), {"attn_backend": "flax"})


def test_stage_roles_and_head_settings_are_typed_by_the_code_that_reads_them():
    """A stage trains roles of `RSNeoForCausalLM.parameter_groups` (or all); a head's settings are its
    config's fields and types, unset (None) where the head's own default holds, the hidden size left to the
    model."""
    from dataclasses import fields

    from rsneo.heads.change import ChangeHeadConfig
    from rsneo.heads.segmentation import SegmentationHeadConfig
    from rsneo.train.freezing import ROLES
    from rsneo.train.schema import ChangeHeadOptions, SegmentationHeadOptions

    stage = OmegaConf.structured(StageConfig)
    assert "name" not in stage  # read by nothing: gone
    with pytest.raises(ValidationError, match="Invalid value 'encoder'"):
        OmegaConf.merge(stage, {"trainable": ["vision", "encoder"]})
    assert list(OmegaConf.merge(stage, {"trainable": ["all"]}).trainable) == ["all"]
    assert {r.value for r in type(OmegaConf.merge(stage, {"trainable": ["all"]}).trainable[0])} == {
        "all",
        *ROLES,
    }
    for options, head in (
        (SegmentationHeadOptions, SegmentationHeadConfig),
        (ChangeHeadOptions, ChangeHeadConfig),
    ):
        assert [f.name for f in fields(options)] == [f.name for f in fields(head) if f.name != "hidden_size"]
        assert all(v is None for v in OmegaConf.to_container(OmegaConf.structured(options)).values())
    typed = OmegaConf.structured(ObjectivesConfig)
    with pytest.raises(ValidationError, match="full_key: segmentation.head.dim"):
        OmegaConf.merge(typed, {"segmentation": {"head": {"dim": "wide"}}})
    with pytest.raises(ConfigKeyError, match="Key 'dims' not in 'SegmentationHeadOptions'"):
        OmegaConf.merge(typed, {"segmentation": {"head": {"dims": 16}}})
