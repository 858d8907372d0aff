"""docs/walkthrough.md runs as written: its Python blocks in order, its `skood` commands through
the CLI's entry point, in a fresh folder; then what the page claims is checked."""

import re
import shlex
from pathlib import Path

import numpy as np
import pytest

from skood.cli import main
from skood.metrics import auroc

PAGE = Path(__file__).resolve().parent.parent / "docs" / "walkthrough.md"


def _blocks():
    return re.findall(r"```(python|bash)\n(.*?)```", PAGE.read_text(encoding="utf-8"), re.S)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_the_walkthrough_runs_and_does_what_it_says(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__walkthrough__"}
    commands = 0
    for kind, code in _blocks():
        if kind == "python":
            exec(compile(code, str(PAGE), "exec"), namespace)
            continue
        for line in code.strip().splitlines():
            args = shlex.split(line)
            assert args[0] == "skood", line
            assert main(args[1:]) == 0, capsys.readouterr().err
            commands += 1
    assert commands == 3
    printed = capsys.readouterr().out
    table = namespace["table"]
    truth = dict(zip(table["id"], table["label"]))

    # scores.csv: the documented columns, one line per new row, joined back on id.
    import pandas as pd

    scores = pd.read_csv("scores.csv")
    assert list(scores.columns) == [
        "id", "row", "score", "p_value", "is_outlier", "unseen", "threshold",
    ]  # fmt: skip
    assert len(scores) == 100 and set(scores["id"]) == set(namespace["this_week"]["id"])
    week = namespace["week"]
    assert len(week) == 100 and week["p_value"].notna().all()
    # It detects: the week's anomalies have small p-values, and few normal rows are flagged.
    labels = np.array([truth[i] for i in scores["id"]])
    assert auroc(np.where(labels == 1, -1, 1), scores["p_value"]) > 0.9
    assert scores["is_outlier"][labels == 0].mean() < 0.15
    assert scores["is_outlier"][labels == 1].mean() > 0.5

    # The saved model scores next week by name, with the ids it remembers.
    later = pd.read_csv("next_scores.csv")
    assert later.columns[0] == "id" and list(later["id"]) == list(namespace["next_week"]["id"])

    # --explain 3: the columns and shares the page shows, printed as the page shows them.
    explained = pd.read_csv("explained.csv")
    assert list(explained.columns) == [*scores.columns] + [
        f"explain_{i}{end}" for i in (1, 2, 3) for end in ("", "_share")
    ]
    np.testing.assert_array_equal(explained["score"], scores["score"])
    names = explained[["explain_1", "explain_2", "explain_3"]].fillna("").to_numpy()
    user_columns = set(table.columns) - {"id", "label"}
    assert set(names.ravel()) <= user_columns | {""}  # "site", never one of its one-hot codes
    shown = re.search(r"```text\n( +id +p_value.*?)```", PAGE.read_text(encoding="utf-8"), re.S)
    assert shown.group(1).strip() in printed

    # The Python model agrees with itself after saving, and scores from the command line too.
    import skood

    new = pd.read_csv("this_week.csv").drop(columns="id")
    reloaded = skood.load("model_py.skood")
    np.testing.assert_array_equal(reloaded.score_samples(new), namespace["p_values"])
    assert main(["score", "next_week.csv", "--model", "model_py.skood", "--id", "id",
                 "--out", "py_scores.csv"]) == 0  # fmt: skip
    assert len(pd.read_csv("py_scores.csv")) == len(namespace["next_week"])
