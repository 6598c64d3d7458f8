"""`rsneo finetune` and `rsneo train experiment=finetune_*` (rsneo.cli.finetune): what the commands print,
the folder `change` and `ask` then use, and bad input refused with exit 2 before anything is written.

What a fine-tune trains and writes is specified in tests/train/test_finetune.py."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio

from rsneo.cli import run_app

PAIRS = ("test_2_0000_0000", "train_36_0512_0512")
FAST = ["--epochs", "1", "finetune.steps_per_epoch=1", "data.tile=64", "data.batch_size=2",
        "finetune.widths=[8,8,16,16]", "trainer.progress_bar=false"]  # fmt: skip


@pytest.fixture(scope="module")
def levir(shared_data, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("levir")
    for folder in ("A", "B", "label"):
        (root / folder).mkdir()
        for name in PAIRS:
            (root / folder / f"{name}.png").symlink_to(shared_data / "levir_cd" / folder / f"{name}.png")
    return root


@pytest.fixture(scope="module")
def finetuned(levir, tiny_model_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ft") / "model"
    assert (
        run_app(["finetune", "change", str(levir), "--out", str(out), "--model", str(tiny_model_dir), *FAST])
        == 0
    )
    return out


def test_finetune_change_prints_what_trained_and_its_validation_score(
    levir, tiny_model_dir, tmp_path, capsys
):
    out = tmp_path / "model"
    code = run_app(
        ["finetune", "change", str(levir), "--out", str(out), "--model", str(tiny_model_dir), *FAST]
    )
    printed = " ".join(capsys.readouterr().out.split())
    assert code == 0, printed
    assert (
        "fine-tuned the change head: the head only (backbone frozen); 2 labelled sample(s), 1 epoch(s)"
        in printed
    )
    assert "validation (spatial blocks of 64 px" in printed
    for name in ("F1", "IoU", "precision", "recall", "kappa", "boundary F1", "small-object recall"):
        assert f"{name} 0." in printed or f"{name} 1.000" in printed
    assert f"model written to {out}" in printed
    assert (out / "finetune.json").is_file()
    assert not (tmp_path / ".model.finetune-run").exists()  # checkpoints tidied once the model is written


def test_change_and_ask_use_the_fine_tuned_head(finetuned, levir, tmp_path, capsys):
    from rsneo.heads.system import load_system
    from rsneo.predict.ask import ask

    pair = [str(levir / d / f"{PAIRS[0]}.png") for d in ("A", "B")]
    assert run_app(["change", *pair, "--model", str(finetuned), "--out", str(tmp_path / "c")]) == 0
    report = (tmp_path / "c" / "change_report.html").read_text()
    assert "fine-tuned on labelled pairs" in report
    with rasterio.open(tmp_path / "c" / "change.tif") as src:
        mapped = 100 * float(np.mean(src.read(1) == 1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        answer = ask(load_system(finetuned), [Path(p) for p in pair], "How much of the area changed?")
    assert answer.value is not None and abs(answer.value - mapped) < 0.01  # one map, one definition


def test_the_same_run_as_a_hydra_experiment(levir, tiny_model_dir, tmp_path, capsys):
    code = run_app([
        "train", "experiment=finetune_change", f"data.root={levir}", f"model.init_from={tiny_model_dir}",
        f"out_dir={tmp_path / 'run'}", f"finetune.out={tmp_path / 'model'}", "finetune.max_epochs=1",
        *FAST[2:],
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
        (["change", "{levir}", "--classes", "water"], "--classes: expected VALUE=NAME items"),
        (["change", "{broken}"], "no partner"),
    ],
)
def test_bad_input_exits_2_with_one_message_and_writes_nothing(
    args, message, levir, tiny_model_dir, tmp_path, capsys
):
    broken = tmp_path / "broken"
    for folder in ("A", "B", "label"):
        (broken / folder).mkdir(parents=True)
    (broken / "A" / "x.png").symlink_to(levir / "A" / f"{PAIRS[0]}.png")
    args = [a.format(levir=levir, broken=broken) for a in args]
    out = tmp_path / "model"
    code = run_app(["finetune", *args, "--out", str(out), "--model", str(tiny_model_dir), *FAST[2:]])
    err = " ".join(capsys.readouterr().err.split())
    assert code == 2
    assert message in err and err.count("error:") == 1
    assert not out.exists() and not (tmp_path / ".model.finetune-run" / "checkpoints").exists()
