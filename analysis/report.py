"""One self-contained HTML page for a sweep: tables, plots (inline base64 PNG), evaluation
protocol, sweep config, code version and every trial's run id and status. Viewable offline.

    python analysis/report.py --experiment cjepa-ablation --out report.html
    python analysis/report.py --experiment cjepa-ablation --sweep ID --metric final/history \\
        --out runs/analysis/report.html --no-log

The page is also logged to the sweep's parent run as ``analysis/report.html`` (unless
``--no-log``).
"""

from __future__ import annotations

import argparse
import base64
import html
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # `python analysis/report.py`: make `analysis` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analysis.ablation_table import (
    GUESSED,
    Table,
    add_common_args,
    sweep_and_table,
    to_html,
    to_markdown,
)
from analysis.plots import write_plots
from analysis.runs import AnalysisError, Sweep, group_key, log_artifacts

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 72em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; }
th { background: #f2f2f2; } td.gap { background: #fff4e0; } tr.bad td { background: #fde8e8; }
tr.ref td { color: #555; background: #fafafa; } td.sig { font-weight: bold; }
p.caption { font-size: 0.85em; color: #444; margin-bottom: 0; }
img { max-width: 100%; border: 1px solid #eee; margin: 0.5em 0; }
code, pre { background: #f7f7f7; } pre { padding: 0.6em; white-space: pre-wrap; }
"""
_ESC = html.escape


def _kv_table(items: dict[str, str], *, sort: bool = True) -> str:
    pairs = sorted(items.items()) if sort else list(items.items())
    rows = "".join(
        f"<tr><th>{_ESC(k)}</th><td><code>{_ESC(str(v))}</code></td></tr>" for k, v in pairs
    )
    return f"<table>{rows}</table>" if rows else "<p><em>none recorded</em></p>"


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<figure><img alt="{_ESC(path.stem)}" src="data:image/png;base64,{data}"></figure>'


def _trials_table(sweep: Sweep) -> str:
    head = ["run name", "run id", "status", "group", "seed", "duration (s)", "git commit"]
    out = ["<table>", "<tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>"]
    for t in sweep.trials:
        dur = "" if t.duration_s is None else f"{t.duration_s:.1f}"
        cells = [
            t.name,
            t.run_id,
            t.status,
            group_key(t).label(),
            t.seed,
            dur,
            t.tags.get("cjepa.git_commit", "?"),
        ]
        cls = "" if t.finished else ' class="bad"'
        out.append(f"<tr{cls}>" + "".join(f"<td>{_ESC(c)}</td>" for c in cells) + "</tr>")
    return "\n".join([*out, "</table>"])


def _protocol(sweep: Sweep) -> dict[str, str]:
    """Evaluation protocol(s) recorded on the trials (tag and param), with how many use each."""
    seen: dict[str, int] = {}
    for t in sweep.trials:
        p = t.tags.get("cjepa.eval_protocol") or t.params.get("eval_protocol") or "not recorded"
        seen[p] = seen.get(p, 0) + 1
    return {f"protocol {i + 1} ({n} trial(s))": p for i, (p, n) in enumerate(seen.items())}


def _directions_text(table: Table) -> str:
    """Where the directions came from, and which were guessed (also a footnote of the table)."""
    text = "floors (trivial baselines to beat) and ceilings (true slots, the simulator). "
    text += "Directions: --direction, else the sweep's metrics.json, else cjepa.metrics"
    if table.guessed:
        text += f"; {GUESSED} = guessed from the name: {', '.join(table.guessed)}"
    return text + "."


def render(sweep: Sweep, table: Table, plots: list[Path]) -> str:
    """The report page as a string (no external resources)."""
    tags, params = sweep.parent.data.tags, sweep.parent.data.params
    commits = sorted({t.tags.get("cjepa.git_commit", "?") for t in sweep.trials})
    meta = {
        "experiment": sweep.experiment,
        "sweep id": sweep.sweep_id,
        "parent run id": sweep.parent_id,
        "parent status": sweep.parent.info.status,
        "tracking URI": sweep.uri,
        "preset": tags.get("cjepa.preset", "-"),
        "world": tags.get("cjepa.world", "-"),
        "code version (parent)": tags.get("cjepa.git_commit", "not recorded"),
        "code version (trials)": ", ".join(commits),
        "trials": f"{len(sweep.trials)} ({len(table.problems)} not finished)",
    }
    versions = {k: v for k, v in tags.items() if k.startswith("cjepa.version.")}
    versions |= {k: tags[k] for k in ("cjepa.python", "cjepa.platform", "cjepa.gpu") if k in tags}
    sweep_cfg = {k: v for k, v in params.items() if k.startswith(("sweep.", "stages"))}
    base_cfg = {k: v for k, v in params.items() if k.startswith("base.")}
    problems = "".join(
        f"<li>{_ESC(t.name)} (<code>{_ESC(t.run_id)}</code>): {_ESC(t.status)}</li>"
        for t in table.problems
    )
    body = [
        f"<h1>{_ESC(sweep.experiment)} / {_ESC(sweep.sweep_id)}</h1>",
        f"<p>Generated {time.strftime('%Y-%m-%d %H:%M:%S')} from MLflow.</p>",
        _kv_table(meta, sort=False),
        "<h2>Ablation table</h2>",
        f"<p>Mean ± std over seeds {_ESC(', '.join(table.expected_seeds))} (sample std, finished "
        "trials only); ↓ lower is better, ↑ higher is better; best per column in bold; "
        "highlighted cells lack seeds. Grey rows are the metrics' references: "
        f"{_ESC(_directions_text(table))}</p>",
        to_html(table),
        f"<h3>Trials not finished</h3><ul>{problems}</ul>" if problems else "",
        "<h2>Plots</h2>",
        *(_img(p) for p in plots),
        "" if plots else "<p><em>no plots</em></p>",
        "<h2>Evaluation protocol</h2>",
        _kv_table(_protocol(sweep)),
        "<h2>Sweep configuration</h2>",
        _kv_table(sweep_cfg),
        f"<details><summary>base experiment config ({len(base_cfg)} params)</summary>",
        _kv_table(base_cfg),
        "</details>",
        "<h2>Trials</h2>",
        _trials_table(sweep),
        "<h2>Environment</h2>",
        _kv_table(versions),
        "<h2>Table as Markdown</h2>",
        f"<pre>{_ESC(to_markdown(table))}</pre>",
    ]
    title = f"{sweep.experiment} / {sweep.sweep_id}"
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{_ESC(title)}</title><style>{_CSS}</style></head>\n<body>\n"
        + "\n".join(b for b in body if b)
        + "\n</body></html>\n"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(parser)
    parser.add_argument("--out", type=Path, default=Path("report.html"), help="the HTML file")
    args = parser.parse_args(argv)
    try:
        sweep, table = sweep_and_table(args)
    except AnalysisError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        page = render(sweep, table, write_plots(sweep, table, Path(tmp)))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(page, encoding="utf-8")
    if not args.no_log:
        if args.out.name == "report.html":
            log_artifacts(sweep, [args.out], "analysis")
        else:
            with tempfile.TemporaryDirectory() as tmp:
                copy = Path(tmp) / "report.html"
                copy.write_text(page, encoding="utf-8")
                log_artifacts(sweep, [copy], "analysis")
    where = "" if args.no_log else f" (logged to run {sweep.parent_id} as analysis/report.html)"
    print(f"wrote {args.out}, {len(page) / 1024:.0f} KiB{where}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
