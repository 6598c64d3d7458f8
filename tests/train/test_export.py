"""`rsneo.train.export`: a training checkpoint becomes a model folder that loads back with the same weights
and gives the same logits; what is not an rsneo checkpoint, or a folder in use, is refused."""

from __future__ import annotations

import pytest
import torch

from rsneo.errors import InputError
from rsneo.heads.system import load_system
from rsneo.model.causal_lm import RSNeoForCausalLM
from rsneo.model.config import RSNeoConfig
from rsneo.model.positions import text_positions
from rsneo.train.checkpoint import submodule_state
from rsneo.train.export import export_checkpoint


@pytest.fixture(scope="module")
def exported(tiny_checkpoint, tmp_path_factory):
    return export_checkpoint(tiny_checkpoint, tmp_path_factory.mktemp("export") / "model")


def test_exported_folder_gives_the_checkpoints_logits(tiny_checkpoint, exported):
    checkpoint = torch.load(tiny_checkpoint, weights_only=True)
    meta = checkpoint["rsneo"]
    original = RSNeoForCausalLM(RSNeoConfig.from_dict(meta["model_config"]))
    original.load_state_dict(submodule_state(checkpoint["state_dict"], "model"))
    loaded = RSNeoForCausalLM.from_pretrained(exported)
    text = "What changed between these images? How much water is there?"
    ids = torch.tensor([load_system(exported).tokenizer(text, add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
        want = original.eval()(text_positions(ids)).logits
        got = loaded.eval()(text_positions(ids)).logits
    torch.testing.assert_close(got, want, rtol=0, atol=1e-6)  # same fp32 weights, same code: measured 0


def test_exported_folder_holds_both_heads_and_the_tokenizer(tiny_checkpoint, exported):
    state = torch.load(tiny_checkpoint, weights_only=True)["state_dict"]
    system = load_system(exported)
    assert system.trained_heads == ("segmentation", "change")
    for head, prefix in ((system.segmentation, "seg_head"), (system.change, "change_head")):
        for name, tensor in head.state_dict().items():
            assert torch.equal(tensor, state[f"{prefix}.{name}"]), name
    text = "a satellite image of water"
    assert system.tokenizer(text)["input_ids"]  # the run's tokenizer travelled inside the checkpoint
    assert not [p for p in exported.parent.iterdir() if p.name.startswith(".")]  # no temporary folder left


def test_a_folder_with_files_is_kept_unless_overwrite(tiny_checkpoint, tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "mine.txt").write_text("keep me")
    with pytest.raises(InputError, match=r"model: expected an empty or new folder .* \(use --overwrite\)"):
        export_checkpoint(tiny_checkpoint, folder)
    assert (folder / "mine.txt").exists()
    assert export_checkpoint(tiny_checkpoint, folder, overwrite=True) == folder.resolve()
    assert not (folder / "mine.txt").exists() and (folder / "config.json").is_file()


def test_files_that_are_not_rsneo_checkpoints_are_refused(tiny_checkpoint, tmp_path):
    with pytest.raises(
        InputError, match=r"none.ckpt: expected a Lightning checkpoint file \(.ckpt\), found none"
    ):
        export_checkpoint(tmp_path / "none.ckpt", tmp_path / "a")
    plain = tmp_path / "plain.ckpt"
    torch.save({"state_dict": {}}, plain)
    with pytest.raises(InputError, match=r"plain.ckpt: expected an rsneo training checkpoint"):
        export_checkpoint(plain, tmp_path / "b")
    wrong = torch.load(tiny_checkpoint, weights_only=True)
    wrong["state_dict"] = {k: v for k, v in wrong["state_dict"].items() if "layers.0." not in k}
    torch.save(wrong, tmp_path / "wrong.ckpt")
    with pytest.raises(InputError, match=r"wrong.ckpt: its weights do not match its model config \(missing"):
        export_checkpoint(tmp_path / "wrong.ckpt", tmp_path / "c")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain.ckpt", "wrong.ckpt"]  # nothing exported


def test_exported_folder_records_the_imagery_its_heads_trained_on(exported):
    """The smoke run's sources (every sample archive): segmentation on the Sen1Floods11 Sentinel-2 chip
    (EPSG:4326, 8.9 m by its true pixel area), change also on BigEarthNet L2A (10 m) and Pucallpa (89 m)."""
    from rsneo.heads.domain import load_domain

    domain = load_domain(exported)
    assert domain.heads["segmentation"].sensors == ("sentinel2_l1c",)
    assert domain.heads["segmentation"].pixel_size_m == pytest.approx((8.86, 8.86), abs=0.05)
    change = domain.heads["change"]
    assert set(change.sensors) == {"sentinel2_l1c", "sentinel2_l2a", "landsat5_tm"}
    assert change.pixel_size_m == pytest.approx((8.86, 89.2), abs=0.1)


def test_no_domain_is_recorded_rather_than_a_guessed_one(shared_data, tmp_path):
    from rsneo.train.export import training_domain

    def meta(root, sources):
        return {"run_config": {"data_root": str(root), "data": {"sources": sources}}}

    assert training_domain(meta(shared_data, ["sen1floods11"]), ["segmentation"]) is not None
    assert training_domain(meta(shared_data, ["sen1floods11", "shards"]), ["segmentation"]) is None
    assert training_domain(meta(tmp_path / "gone", ["sen1floods11"]), ["segmentation"]) is None
    assert training_domain(meta(tmp_path, ["sen1floods11"]), ["segmentation"]) is None  # no archive there
