"""`rsneo finetune` and `rsneo train experiment=finetune_*` (rsneo.cli.finetune): what the commands print,
the folder `change` and `ask` then use, and bad input refused with exit 2 before anything is written.

What a fine-tune trains and writes is specified in tests/train/test_finetune.py."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio

from rsneo.cli import run_app
from rsneo.cli.documents import FinetuneDocument

PAIR = "test_2_0000_0000"  # one of the `levir_crops`
FAST = ["--epochs", "1", "finetune.steps_per_epoch=1", "data.tile=64", "data.batch_size=2",
        "finetune.val_block=32",
        "finetune.widths=[8,8,16,16]", "trainer.progress_bar=false"]  # fmt: skip


@pytest.fixture(scope="module")
def finetuned(levir_crops, tiny_model_dir, tmp_path_factory) -> tuple[Path, str]:
    """A model folder written by `rsneo finetune change`, and what the command printed."""
    import contextlib
    import io

    out = tmp_path_factory.mktemp("ft") / "model"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        argv = ["finetune", "change", str(levir_crops), "--out", str(out), "--model", str(tiny_model_dir)]
        code = run_app([*argv, *FAST])
    assert code == 0, printed.getvalue()
    return out, " ".join(printed.getvalue().split())


def test_finetune_change_prints_what_trained_and_its_validation_score(finetuned):
    out, printed = finetuned
    assert (
        "fine-tuned the change head: the head only (backbone frozen); 3 labelled sample(s), 1 epoch(s)"
        in printed
    )
    assert "validation (spatial blocks of 32 px" in printed
    for name in ("F1", "IoU", "precision", "recall", "kappa", "boundary F1", "small-object recall"):
        assert re.search(rf"{name} (0\.\d{{3}}|1\.000|nan)", printed), name
    assert f"model written to {out}" in printed
    assert (out / "finetune.json").is_file()
    assert not (out.parent / ".model.finetune-run").exists()  # checkpoints tidied once the model is written


def test_finetune_segment_writes_a_model_that_segment_uses(shared_data, tiny_model_dir, tmp_path, capsys):
    """The command as the README gives it, on the Sentinel-1 chip: a radar head (its stem tells VV from VH),
    then `rsneo segment --model` maps the chip with the trained names."""
    import json

    flood = shared_data / "sen1floods11"
    out = tmp_path / "model"
    argv = ["finetune", "segment", str(flood / "S1"), str(flood / "Labels"), "--classes", "0=land,1=water",
            "--ignore", "-1", "--out", str(out), "--model", str(tiny_model_dir)]  # fmt: skip
    assert run_app([*argv, *FAST]) == 0, capsys.readouterr().out
    printed = " ".join(capsys.readouterr().out.split())
    assert "the segmentation head: the head only (backbone frozen); 1 labelled sample(s)" in printed
    assert '"none of these" below cosine' in printed  # the calibrated threshold, said
    head = json.loads((out / "heads.json").read_text())["segmentation"]
    assert head["decoder"] == "unet" and head["polarisation"] is True and head["none_threshold"] <= 0
    record = json.loads((out / "finetune.json").read_text())["abstention"]
    assert record["none_threshold"] == head["none_threshold"] and record["before"] == 0.0
    s1 = next((flood / "S1").glob("*.tif"))
    code = run_app(["segment", str(s1), "--model", str(out), "--classes", "land,water",
                    "--out", str(tmp_path / "map")])  # fmt: skip
    assert code == 0, capsys.readouterr().out
    with rasterio.open(next((tmp_path / "map").glob("*.tif"))) as src:
        mapped = src.read(1)
    assert mapped.shape[1] == 512 and set(np.unique(mapped)) <= {0, 1, 2, 255}
    with rasterio.open(next((flood / "Labels").glob("*.tif"))) as src:
        labelled = src.read(1) >= 0
    # abstention calibrated on the validation blocks: a head trained on this chip does not abstain on its
    # labelled pixels (with the uncalibrated threshold, cosine 0, it did on a quarter of them)
    assert (mapped[labelled] == 2).mean() < 0.05


def test_json_document_names_the_folder_and_the_validation_scores(
    levir_crops, tiny_model_dir, tmp_path, capsys
):
    out = tmp_path / "model"
    argv = ["finetune", "change", str(levir_crops), "--out", str(out), "--model", str(tiny_model_dir)]
    assert run_app([*argv, "--json", *FAST]) == 0
    doc = FinetuneDocument.model_validate_json(capsys.readouterr().out)  # stdout is the document alone
    assert doc.ok and doc.task == "change" and doc.model == str(out) and doc.samples == 3
    assert doc.record == str(out / "finetune.json") and (out / "finetune.json").is_file()
    assert doc.epochs == 1 and doc.trained == "the head only (backbone frozen)"
    assert {"f1", "iou", "precision", "recall", "kappa"} <= set(doc.scores)


def test_change_and_ask_use_the_fine_tuned_head(finetuned, levir_crops, tmp_path):
    from rsneo.heads.system import load_system
    from rsneo.predict.ask import ask
    from rsneo.predict.requests import AskRequest

    model = finetuned[0]
    pair = [str(levir_crops / d / f"{PAIR}.png") for d in ("A", "B")]
    assert run_app(["change", *pair, "--model", str(model), "--out", str(tmp_path / "c")]) == 0
    report = (tmp_path / "c" / "change_report.html").read_text()
    assert "fine-tuned on labelled pairs" in report
    with rasterio.open(tmp_path / "c" / "change.tif") as src:
        mapped = 100 * float(np.mean(src.read(1) == 1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        request = AskRequest(rasters=tuple(Path(p) for p in pair), question="How much of the area changed?")
        answer = ask(load_system(model), request)
    assert answer.value is not None and abs(answer.value - mapped) < 0.01  # one map, one definition


def test_the_same_run_as_a_hydra_experiment_in_bf16(levir_crops, tiny_model_dir, tmp_path, capsys):
    code = run_app([
        "train", "experiment=finetune_change", f"data.root={levir_crops}",
        f"model.init_from={tiny_model_dir}",
        f"out_dir={tmp_path / 'run'}", f"finetune.out={tmp_path / 'model'}", "finetune.max_epochs=1",
        "trainer.precision=bf16-mixed", *FAST[2:],
    ])  # fmt: skip
    printed = " ".join(capsys.readouterr().out.split())
    assert code == 0, printed
    assert "fine-tuned the change head" in printed and (tmp_path / "model" / "heads.json").is_file()
    assert (tmp_path / "run" / "checkpoints" / "best.ckpt").is_file()  # a Hydra run keeps its run folder


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["segment", "images.tif", "--classes", "1=water"], "expected IMAGES MASKS pairs"),
        (["change", "{levir}", "--train", "everything"], "--train: expected heads, prebuffer, last-N"),
        (["change", "{levir}", "--classes", "water"], "--classes: expected entries VALUE=NAME"),
        (["change", "{broken}"], "no partner"),
    ],
)
def test_bad_input_exits_2_with_one_message_and_writes_nothing(
    args, message, levir_crops, tiny_model_dir, tmp_path, capsys
):
    broken = tmp_path / "broken"
    for folder in ("A", "B", "label"):
        (broken / folder).mkdir(parents=True)
    (broken / "A" / "x.png").symlink_to(levir_crops / "A" / f"{PAIR}.png")
    args = [a.format(levir=levir_crops, broken=broken) for a in args]
    out = tmp_path / "model"
    code = run_app(["finetune", *args, "--out", str(out), "--model", str(tiny_model_dir), *FAST[2:]])
    err = " ".join(capsys.readouterr().err.split())
    assert code == 2
    assert message in err and err.count("error:") == 1
    assert not out.exists() and not (tmp_path / ".model.finetune-run" / "checkpoints").exists()
