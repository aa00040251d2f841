"""Plots, the HTML report and the command lines, end to end on a synthetic sweep."""

from __future__ import annotations

import base64
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from analysis import ablation_table, figures, report
from analysis.store import load_sweep
from analysis.table import build_table

REPO = Path(__file__).resolve().parents[2]
PNG = b"\x89PNG\r\n\x1a\n"


def _artifacts(uri: str, run_id: str, path: str) -> set[str]:
    return {f.path for f in MlflowClient(tracking_uri=uri).list_artifacts(run_id, path)}


def test_plots_are_nonempty_pngs(synthetic_sweep, tmp_path, capsys):
    sweep = load_sweep(synthetic_sweep.uri, synthetic_sweep.experiment)
    written = figures.write_plots(sweep, build_table(sweep), tmp_path / "plots")
    names = {p.name for p in written}
    assert "budget_final_future_visible.png" in names
    assert "learning_curves.png" in names
    assert "planning_success_vs_time.png" not in names
    assert "no planning metrics" in capsys.readouterr().out
    for path in written:
        assert path.read_bytes()[:8] == PNG and path.stat().st_size > 1000


def test_planning_scatter_per_model_label(synthetic_sweep, tmp_path):
    mlf = MlflowClient(tracking_uri=synthetic_sweep.uri)
    exp_id = mlf.get_experiment_by_name(synthetic_sweep.experiment).experiment_id
    for model, success, wall in [("C-JEPA", 0.8, 2.0), ("random", 0.1, 0.01)]:
        for seed in (0, 1):
            run = mlf.create_run(
                exp_id,
                tags={
                    "mlflow.parentRunId": synthetic_sweep.parent_id,
                    "cjepa.role": "trial",
                    "cjepa.seed": str(seed),
                    "cjepa.model": model,
                },
            )
            mlf.log_metric(run.info.run_id, "plan/success_rate", success + 0.05 * seed)
            mlf.log_metric(run.info.run_id, "plan/plan_wall_s_per_episode", wall)
            mlf.set_terminated(run.info.run_id, "FINISHED")
    sweep = load_sweep(synthetic_sweep.uri, synthetic_sweep.experiment)
    points = figures.planning_points(sweep)
    assert sorted(points) == ["C-JEPA", "random"]
    assert points["C-JEPA"]["success_rate"] == pytest.approx([0.8, 0.85])
    path = figures.planning_scatter(sweep, tmp_path / "plan.png")
    assert path is not None and path.read_bytes()[:8] == PNG
    table = build_table(sweep, ["plan/success_rate"])
    assert table.show_model and {r.key.model for r in table.rows} >= {"C-JEPA", "random"}


def test_report_is_self_contained_html(synthetic_sweep, tmp_path):
    out = tmp_path / "report.html"
    argv = ["--experiment", synthetic_sweep.experiment, "--tracking-uri", synthetic_sweep.uri]
    assert report.main([*argv, "--out", str(out)]) == 0
    page = out.read_text()
    assert "<table>" in page and "OC-JEPA" in page and "<b>0.2200 ± 0.0200</b>" in page
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(images) >= 2
    assert all(base64.b64decode(i)[:8] == PNG for i in images)
    assert not re.search(r'(src|href)="(https?:|file:|/)', page)  # nothing fetched
    assert synthetic_sweep.failed_run_id in page and "FAILED" in page
    assert "fixed val windows" in page and "abc1234" in page and "sweep.seeds" in page
    logged = _artifacts(synthetic_sweep.uri, synthetic_sweep.parent_id, "analysis")
    assert "analysis/report.html" in logged


def test_table_cli_main_writes_and_logs(synthetic_sweep, tmp_path, capsys):
    argv = ["--experiment", synthetic_sweep.experiment, "--tracking-uri", synthetic_sweep.uri]
    assert ablation_table.main([*argv, "--out", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out
    assert "| OC-JEPA | 0 |" in printed and "missing seed 2" in printed
    tex = (tmp_path / "out" / "ablation_table.tex").read_text()
    assert tex.startswith("% final\n\\begin{tabular}") and "% vqa\n" in tex
    assert (tmp_path / "out" / "plots" / "learning_curves.png").exists()
    logged = _artifacts(synthetic_sweep.uri, synthetic_sweep.parent_id, "analysis")
    assert {"analysis/ablation_table.md", "analysis/ablation_table.tex"} <= logged
    plots_logged = _artifacts(synthetic_sweep.uri, synthetic_sweep.parent_id, "analysis/plots")
    assert "analysis/plots/budget_final_future_visible.png" in plots_logged


def test_cli_errors_name_the_culprit(synthetic_sweep, capsys):
    argv = ["--tracking-uri", synthetic_sweep.uri, "--no-log", "--no-plots"]
    assert ablation_table.main([*argv, "--experiment", "nope"]) == 2
    assert (
        "no experiment 'nope' in the store; known experiments: ['Default', 'analysis-test']"
        in capsys.readouterr().err
    )
    argv += ["--experiment", synthetic_sweep.experiment, "--metric", "cf/x"]
    assert ablation_table.main(argv) == 2
    assert "['cf/x'] not logged" in capsys.readouterr().err


def test_script_runs_as_a_subprocess(synthetic_sweep, tmp_path):
    env = {**os.environ, "MLFLOW_TRACKING_URI": synthetic_sweep.uri}
    script = [sys.executable, "-m", "analysis.ablation_table", "--experiment", "analysis-test"]
    flags = ["--metric", "final/history", "--no-plots", "--no-log", "--out", str(tmp_path)]
    proc = subprocess.run(
        [*script, *flags],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "**0.2000 ± 0.1414**" in proc.stdout
    assert (tmp_path / "ablation_table.md").exists()
