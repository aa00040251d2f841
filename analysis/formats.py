"""A :class:`analysis.table.Table` as GitHub Markdown, booktabs LaTeX and HTML: one table per
metric family, the best mean per column in bold, reference rows, then the "vs OC-JEPA" table."""

from __future__ import annotations

import html

from analysis.runs import OC_JEPA
from analysis.table import (
    GUESSED,
    REFERENCES_NOTE,
    VERSUS_CAPTION,
    Cell,
    Table,
    families,
    reference_rows,
)
from cjepa.stats import Difference


def _count(cell: Cell) -> str:
    if not cell.missing:
        return f"n={cell.n}"
    return f"n={cell.n} of {cell.expected}; missing seed {','.join(cell.missing)}"


def _arrow(direction: str) -> str:
    return "↓" if direction == "min" else "↑"


def _head(table: Table, metric: str) -> str:
    """A column header: the name, ↓/↑, and ``?`` when the direction is a guess."""
    mark = GUESSED if table.direction_from.get(metric) == "guessed" else ""
    return f"{metric} {_arrow(table.directions[metric])}{mark}"


def versus_text(diff: Difference, digits: int) -> str:
    """``Difference.text`` with n: ``-0.1000 [-0.1200, -0.0800] * (n=3)``."""
    if not diff.n:
        return "-"
    text = diff.text(digits)
    return text if diff.n < 2 or diff.degenerate else f"{text} (n={diff.n})"


def to_markdown(table: Table, digits: int = 4) -> str:
    """GitHub Markdown, one table per metric family; the best mean per column in bold."""
    lines: list[str] = []
    groups = families(table)
    for family, metrics in groups:
        if len(groups) > 1:
            lines += ([""] if lines else []) + [f"**{family or 'other'}**", ""]
        lines += _md_block(table, metrics, digits)
    return "\n".join(lines + _notes(table))


def _md_block(table: Table, metrics: list[str], digits: int) -> list[str]:
    head = table.head_fields() + [_head(table, m) for m in metrics]
    lines = ["| " + " | ".join(_md(h) for h in head) + " |", "|" + "---|" * len(head)]
    for row in table.rows:
        out = []
        for m in metrics:
            c = row.cells[m]
            if not c.n:
                out.append(f"- ({_count(c)})")
                continue
            value = f"{c.mean:.{digits}f} ± {c.std:.{digits}f}"
            out.append(f"{f'**{value}**' if c.best else value} ({_count(c)})")
        lines.append("| " + " | ".join([_md(f) for f in table.row_fields(row)] + out) + " |")
    blank = [""] * (len(table.head_fields()) - 1)
    for kind, label, values in reference_rows(table, metrics):
        out = [f"{values[m]:.{digits}f}" if m in values else "" for m in metrics]
        lines.append("| " + " | ".join([f"*{kind}: {_md(label)}*", *blank, *out]) + " |")
    return lines + _md_versus(table, metrics, digits)


def _md_versus(table: Table, metrics: list[str], digits: int) -> list[str]:
    shown = [v for v in table.versus if any(v.diffs[m].n for m in metrics)]
    if not shown:
        return []
    head = table.head_fields() + [f"{m} − {OC_JEPA}" for m in metrics]
    lines = ["", f"*{VERSUS_CAPTION}*", ""]
    lines += ["| " + " | ".join(_md(h) for h in head) + " |", "|" + "---|" * len(head)]
    for v in shown:
        out = [versus_text(v.diffs[m], digits) for m in metrics]
        lines.append("| " + " | ".join([_md(f) for f in table.row_fields(v.row)] + out) + " |")
    return lines


def _md(text: str) -> str:
    """A Markdown table cell: ``|`` (as in ``|M|``) would end the cell."""
    return text.replace("|", "\\|")


def _notes(table: Table) -> list[str]:
    notes = [
        "",
        f"mean ± std over seeds {', '.join(table.expected_seeds)} (sample std; n = finished "
        "trials); "
        "↓ lower is better, ↑ higher is better; best per column in bold.",
    ]
    notes += _direction_notes(table)
    if any(table.references.get(m) for m in table.metrics):
        notes += ["", REFERENCES_NOTE]
    if table.problems:
        notes += ["", f"{len(table.problems)} trial(s) not finished (excluded from the table):"]
        notes += [f"- {t.name} (run {t.run_id}): {t.status}" for t in table.problems]
    return notes


def _direction_notes(table: Table) -> list[str]:
    if not table.guessed:
        return []
    return [
        "",
        f"{GUESSED} direction guessed from the name (not in the sweep's metrics.json nor in "
        f"cjepa.metrics): {', '.join(table.guessed)}; set it with --direction METRIC=min|max.",
    ]


_TEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_"}
_TEX |= {"{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def tex_escape(text: str) -> str:
    return "".join(_TEX.get(ch, ch) for ch in text)


def to_latex(table: Table, digits: int = 3) -> str:
    """Booktabs ``tabular`` s, one per metric family; the best mean per column in ``\\textbf``."""
    blocks = [f"% {family}\n" + _tex_block(table, m, digits) for family, m in families(table)]
    return "\n".join(blocks)


def _tex_block(table: Table, metrics: list[str], digits: int) -> str:
    head = [tex_escape(h).replace("|M|", "$|M|$") for h in table.head_fields()]
    arrows = {"min": r"$\downarrow$", "max": r"$\uparrow$"}
    guess = {m: GUESSED if m in table.guessed else "" for m in metrics}
    head += [f"{tex_escape(m)} {arrows[table.directions[m]]}{guess[m]}" for m in metrics]
    lines = [
        r"\begin{tabular}{" + "l" * len(table.head_fields()) + "c" * len(metrics) + "}",
        r"\toprule",
        " & ".join(head) + r" \\",
        r"\midrule",
    ]
    for row in table.rows:
        out = []
        for m in metrics:
            c = row.cells[m]
            if not c.n:
                out.append(f"-- {{\\scriptsize (n=0/{c.expected})}}")
                continue
            value = f"{c.mean:.{digits}f} $\\pm$ {c.std:.{digits}f}"
            value = f"\\textbf{{{value}}}" if c.best else value
            if c.missing:
                miss = ",".join(c.missing)
                value += f" {{\\scriptsize (n={c.n}/{c.expected}; no seed {tex_escape(miss)})}}"
            out.append(value)
        lines.append(" & ".join([tex_escape(f) for f in table.row_fields(row)] + out) + r" \\")
    refs = reference_rows(table, metrics)
    lines += [r"\midrule"] if refs else []
    span = len(table.head_fields())
    for kind, label, values in refs:
        name = rf"\multicolumn{{{span}}}{{l}}{{\textit{{{kind}: {tex_escape(label)}}}}}"
        out = [f"{values[m]:.{digits}f}" if m in values else "" for m in metrics]
        lines.append(" & ".join([name, *out]) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n" + _tex_versus(table, metrics, digits)


def _tex_versus(table: Table, metrics: list[str], digits: int) -> str:
    shown = [v for v in table.versus if any(v.diffs[m].n for m in metrics)]
    if not shown:
        return ""
    head = [tex_escape(h).replace("|M|", "$|M|$") for h in table.head_fields()]
    head += [f"{tex_escape(m)} $-$ {OC_JEPA}" for m in metrics]
    caption = VERSUS_CAPTION.translate(
        {ord("−"): "-", ord("·"): "*", ord("√"): "sqrt ", ord("±"): "+-"}
    )
    lines = [
        f"% {caption}",
        r"\begin{tabular}{" + "l" * len(table.head_fields()) + "c" * len(metrics) + "}",
        r"\toprule",
        " & ".join(head) + r" \\",
        r"\midrule",
    ]
    for v in shown:
        out = [_tex_difference(v.diffs[m], digits) for m in metrics]
        lines.append(" & ".join([tex_escape(f) for f in table.row_fields(v.row)] + out) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def _tex_difference(diff: Difference, digits: int) -> str:
    if not diff.n:
        return "--"
    if diff.n < 2:
        return f"${diff.mean:+.{digits}f}$ {{\\scriptsize (n=1, no CI)}}"
    if diff.degenerate:
        return (
            f"${diff.mean:+.{digits}f}$ {{\\scriptsize (n={diff.n}, equal on every seed: no CI)}}"
        )
    star = "$^{*}$" if diff.significant else ""
    ci = f"[${diff.low:+.{digits}f}$, ${diff.high:+.{digits}f}$]"
    return f"${diff.mean:+.{digits}f}$ {ci}{star} {{\\scriptsize (n={diff.n})}}"


def to_html(table: Table, digits: int = 4) -> str:
    """HTML ``<table>`` s per metric family (for the report); best per column in ``<b>``,
    cells lacking seeds in class ``gap``, reference rows in class ``ref``, then the
    "vs OC-JEPA" table (significant differences in class ``sig``)."""
    blocks = []
    for family, metrics in families(table):
        title = f"<h3>{html.escape(family)}</h3>\n" if len(families(table)) > 1 else ""
        blocks.append(title + _html_block(table, metrics, digits))
    return "\n".join(blocks)


def _html_block(table: Table, metrics: list[str], digits: int) -> str:
    esc = html.escape
    head = table.head_fields() + [_head(table, m) for m in metrics]
    out = ["<table>", "<tr>" + "".join(f"<th>{esc(h)}</th>" for h in head) + "</tr>"]
    for row in table.rows:
        tds = [f"<td>{esc(f)}</td>" for f in table.row_fields(row)]
        for m in metrics:
            c = row.cells[m]
            count = f" <small>({esc(_count(c))})</small>"
            if not c.n:
                tds.append(f"<td><em>-</em>{count}</td>")
                continue
            value = f"{c.mean:.{digits}f} ± {c.std:.{digits}f}"
            value = f"<b>{value}</b>" if c.best else value
            cls = ' class="gap"' if c.missing else ""
            tds.append(f"<td{cls}>{value}{count}</td>")
        out.append("<tr>" + "".join(tds) + "</tr>")
    span = len(table.head_fields())
    for kind, label, values in reference_rows(table, metrics):
        tds = [f'<td colspan="{span}"><em>{esc(kind)}: {esc(label)}</em></td>']
        tds += [f"<td>{values[m]:.{digits}f}</td>" if m in values else "<td></td>" for m in metrics]
        out.append('<tr class="ref">' + "".join(tds) + "</tr>")
    return "\n".join([*out, "</table>"]) + _html_versus(table, metrics, digits)


def _html_versus(table: Table, metrics: list[str], digits: int) -> str:
    esc = html.escape
    shown = [v for v in table.versus if any(v.diffs[m].n for m in metrics)]
    if not shown:
        return ""
    head = table.head_fields() + [f"{m} − {OC_JEPA}" for m in metrics]
    out = [
        f'\n<p class="caption">{esc(VERSUS_CAPTION)}</p>',
        "<table>",
        "<tr>" + "".join(f"<th>{esc(h)}</th>" for h in head) + "</tr>",
    ]
    for v in shown:
        tds = [f"<td>{esc(f)}</td>" for f in table.row_fields(v.row)]
        for m in metrics:
            d = v.diffs[m]
            cls = ' class="sig"' if d.significant else ""
            tds.append(f"<td{cls}>{esc(versus_text(d, digits))}</td>")
        out.append("<tr>" + "".join(tds) + "</tr>")
    return "\n".join([*out, "</table>"])
