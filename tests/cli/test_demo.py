"""`rsneo demo` (rsneo.cli.demo): bad options exit 2 before any work, naming the option or the folder.

The command's happy path (the bundled model on the bundled samples) runs once, in tests/test_demo.py, whose
products it checks; a second whole run here would double the suite's longest test."""

from __future__ import annotations

from rsneo.cli import run_app


def flat(text: str) -> str:
    """Text without whitespace: rich wraps long error lines wherever the terminal width says."""
    return "".join(text.split())


def test_demo_refuses_a_model_folder_that_does_not_exist(tmp_path, capsys):
    missing = tmp_path / "no_model"
    assert run_app(["demo", "--out", str(tmp_path / "out"), "--model", str(missing)]) == 2
    assert flat(str(missing)) in flat(capsys.readouterr().err)
    assert not (tmp_path / "out").exists()


def test_demo_refuses_a_window_that_is_not_a_multiple_of_32(tmp_path, capsys):
    assert run_app(["demo", "--out", str(tmp_path), "--window", "100"]) == 2
    assert flat("--window: expected a multiple of 32 pixels, at least 64, got 100") in flat(
        capsys.readouterr().err
    )


def test_demo_refuses_an_output_path_that_is_a_file(tmp_path, capsys):
    target = tmp_path / "a_file"
    target.write_text("")
    assert run_app(["demo", "--out", str(target)]) == 2
    assert flat(f"output folder {target}: expected a folder rsneo can write to") in flat(
        capsys.readouterr().err
    )
