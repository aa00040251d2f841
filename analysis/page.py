"""The HTML page of ``python -m analysis.report``: tables, plots (inline base64 PNG), evaluation
protocol, sweep config, code version and every trial's run id and status; no external
resources, so it opens offline."""

from __future__ import annotations

import base64
import html
import time
from pathlib import Path

from analysis.formats import to_html, to_markdown
from analysis.runs import Sweep, group_key
from analysis.table import GUESSED, Table

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


def _meta(sweep: Sweep, table: Table) -> dict[str, str]:
    tags = sweep.parent.data.tags
    commits = sorted({t.tags.get("cjepa.git_commit", "?") for t in sweep.trials})
    return {
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


def _table_section(table: Table) -> list[str]:
    problems = "".join(
        f"<li>{_ESC(t.name)} (<code>{_ESC(t.run_id)}</code>): {_ESC(t.status)}</li>"
        for t in table.problems
    )
    return [
        "<h2>Ablation table</h2>",
        f"<p>Mean ± std over seeds {_ESC(', '.join(table.expected_seeds))} (sample std, finished "
        "trials only); ↓ lower is better, ↑ higher is better; best per column in bold; "
        "highlighted cells lack seeds. Grey rows are the metrics' references: "
        f"{_ESC(_directions_text(table))}</p>",
        to_html(table),
        f"<h3>Trials not finished</h3><ul>{problems}</ul>" if problems else "",
    ]


def _config_sections(sweep: Sweep) -> list[str]:
    tags, params = sweep.parent.data.tags, sweep.parent.data.params
    versions = {k: v for k, v in tags.items() if k.startswith("cjepa.version.")}
    versions |= {k: tags[k] for k in ("cjepa.python", "cjepa.platform", "cjepa.gpu") if k in tags}
    sweep_cfg = {k: v for k, v in params.items() if k.startswith(("sweep.", "stages"))}
    base_cfg = {k: v for k, v in params.items() if k.startswith("base.")}
    return [
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
    ]


def render(sweep: Sweep, table: Table, plots: list[Path]) -> str:
    """The report page as a string (no external resources)."""
    body = [
        f"<h1>{_ESC(sweep.experiment)} / {_ESC(sweep.sweep_id)}</h1>",
        f"<p>Generated {time.strftime('%Y-%m-%d %H:%M:%S')} from MLflow.</p>",
        _kv_table(_meta(sweep, table), sort=False),
        *_table_section(table),
        "<h2>Plots</h2>",
        *(_img(p) for p in plots),
        "" if plots else "<p><em>no plots</em></p>",
        *_config_sections(sweep),
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
