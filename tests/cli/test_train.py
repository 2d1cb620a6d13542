"""``pixal3d train`` is ``train.py``: the same options, the same one-line errors (training itself: tests/training)."""

from __future__ import annotations

import argparse

from pixal3d.cli import build_parser, main
from pixal3d.cli.train import build_parser as train_py_parser


def _options(parser: argparse.ArgumentParser) -> dict[str, tuple]:
    return {a.dest: (tuple(a.option_strings), a.default, a.required, a.type) for a in parser._actions}


def test_train_subcommand_has_train_py_options():
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices["train"]
    assert _options(sub) == _options(train_py_parser())


def test_train_subcommand_errors_in_one_line(tmp_path, capsys):
    argv = ["--config", str(tmp_path / "none.json"), "--output_dir", str(tmp_path / "run"), "--data_dir", str(tmp_path)]
    assert main(["train", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "not found" in err[0], err
    assert not (tmp_path / "run").exists()
