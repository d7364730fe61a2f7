"""The worked examples under examples/ run as their README says, here on a small slice."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from conftest import MOVIELENS

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_ranking_model_on_joined_history(tmp_path):
    example = _load("ranking_movielens")
    result = example.main(["--movielens", str(MOVIELENS), "--users", "120", "--epochs", "2", "--dim", "8",
                           "--home", str(tmp_path / "home")])
    valid_from = [v["valid_from"] for v in result["versions"]]
    assert len(valid_from) == 4 and valid_from == sorted(valid_from)
    assert result["test_versions"] == [4]  # test rows get the newest version valid at their time
    assert result["rows_with_movie_vector"] > 0.2 and result["rows_with_user_vector"] > 0.5
    assert result["train_rows"] > 1000 and result["test_rows"] > 1000
    for key in ("auc_without_embeddings", "auc_with_embeddings"):
        assert 0.6 < result[key] < 1.0
