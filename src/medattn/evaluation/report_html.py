"""HTML building blocks of the run report: one self-contained page, inline CSS, no script, no network
resource; figures are PNG files beside the page, linked by relative path."""
from __future__ import annotations

import html
import math
from typing import Iterable, Sequence

CSS = """
:root { --ink: #1d2733; --muted: #5f6b7a; --line: #dde3ea; --band: #f5f7fa; --accent: #2b5f9e; --bad: #b03a2e;
        --good: #2e7d4f; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.5 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       color: var(--ink); background: #eef1f5; }
header { background: #1f3a5f; color: #fff; padding: 22px 32px 18px; }
header h1 { margin: 0 0 4px; font-size: 22px; font-weight: 600; }
header .sub { color: #c9d6e8; font-size: 13px; }
nav { background: #fff; border-bottom: 1px solid var(--line); padding: 8px 32px; font-size: 13px; }
nav a { color: var(--accent); text-decoration: none; margin-right: 18px; }
main { max-width: 1180px; margin: 0 auto; padding: 20px 24px 40px; }
section { background: #fff; border: 1px solid var(--line); border-radius: 6px; padding: 18px 22px;
          margin: 0 0 18px; }
h2 { font-size: 17px; margin: 0 0 12px; padding-bottom: 6px; border-bottom: 2px solid var(--band); }
h3 { font-size: 14px; margin: 16px 0 8px; color: var(--muted); text-transform: uppercase; letter-spacing: .04em; }
h3 .name { text-transform: none; letter-spacing: 0; }
p.note { color: var(--muted); font-size: 13px; margin: 6px 0 10px; }
dl.facts { display: grid; grid-template-columns: max-content 1fr max-content 1fr; gap: 4px 16px; margin: 0; }
dl.facts dt { color: var(--muted); }
dl.facts dd { margin: 0; font-weight: 500; min-width: 0; overflow-wrap: anywhere; }
.table-wrap { max-width: 100%; overflow-x: auto; }
table { border-collapse: collapse; font-size: 13px; margin: 4px 0 10px; }
th, td { padding: 5px 10px; border-bottom: 1px solid var(--line); text-align: right; white-space: nowrap; }
th:first-child, td:first-child { text-align: left; }
thead th { background: var(--band); font-weight: 600; border-bottom: 2px solid var(--line); }
thead tr.groups th { text-align: center; border-bottom: 1px solid var(--line); }
thead tr.groups th + th { border-left: 4px solid #fff; }
table.stacked .ci { display: block; margin-left: 0; }
tbody tr:nth-child(even) { background: #fafbfc; }
.ci { color: var(--muted); font-size: 11px; margin-left: 4px; }
.neg { color: var(--bad); } .pos { color: var(--good); }
.figs { display: flex; flex-wrap: wrap; gap: 14px; align-items: flex-start; }
figure { margin: 0; }
figure img { display: block; max-width: 100%; height: auto; border: 1px solid var(--line); border-radius: 4px; }
figcaption { font-size: 12px; color: var(--muted); margin-top: 4px; }
.gallery figure { width: calc(50% - 7px); }
.tag { display: inline-block; padding: 0 7px; border-radius: 9px; font-size: 11px; font-weight: 600; color: #fff; }
.tag.right { background: var(--good); } .tag.wrong { background: var(--bad); }
footer { text-align: center; color: var(--muted); font-size: 12px; padding: 0 0 24px; }
@media (max-width: 760px) {
  header, nav { padding-left: 14px; padding-right: 14px; }
  main { padding: 12px 8px 24px; }
  section { padding: 14px 12px; }
  dl.facts { grid-template-columns: max-content 1fr; }
  .gallery figure { width: 100%; }
}
"""


def esc(value) -> str:
    return html.escape(str(value), quote=True)


def number(value, digits: int = 3) -> str:
    """A metric as text: 3 decimals, integers as they are, 'n/a' for None and NaN."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return esc(value)
    return str(value) if isinstance(value, int) else f"{value:.{digits}f}"


def with_ci(value, ci: Sequence[float] | None) -> str:
    """'0.812 <span class=ci>[0.781, 0.840]</span>' (the interval only when there is one)."""
    text = number(value)
    if ci is not None and len(ci) == 2 and text != "n/a":
        text += f'<span class="ci">[{number(ci[0])}, {number(ci[1])}]</span>'
    return text


def signed(value, digits: int = 3) -> str:
    """A change: '+0.012' in green, '-0.034' in red."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    cls = "neg" if value < 0 else "pos" if value > 0 else ""
    return f'<span class="{cls}">{value:+.{digits}f}</span>'


def table(header: Sequence[str], rows: Iterable[Sequence[str]], raw: bool = True,
          groups: Sequence[tuple[str, int]] = (), stacked: bool = False) -> str:
    """An HTML table; cells are HTML already when ``raw`` (else escaped).

    ``groups``: an optional first header row of (label, number of columns) spanning ``header``.
    ``stacked``: intervals go below their value (for tables with many interval columns). The table
    scrolls sideways inside its section when it is wider than the page.
    """
    cell = (lambda c: str(c)) if raw else esc
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    if groups:
        spans = "".join(f'<th colspan="{n}">{esc(label)}</th>' for label, n in groups)
        head = f'<tr class="groups">{spans}</tr><tr>{head}</tr>'
    else:
        head = f"<tr>{head}</tr>"
    body = "".join("<tr>" + "".join(f"<td>{cell(c)}</td>" for c in row) + "</tr>" for row in rows)
    cls = ' class="stacked"' if stacked else ""
    return f'<div class="table-wrap"><table{cls}><thead>{head}</thead><tbody>{body}</tbody></table></div>'


def figure(src: str, caption: str = "", alt: str = "", width: int | None = None) -> str:
    """A figure with a relative PNG link (``src`` is a file name beside the page)."""
    style = f' style="width:{width}px"' if width else ""
    cap = f"<figcaption>{caption}</figcaption>" if caption else ""
    return f'<figure{style}><img src="{esc(src)}" alt="{esc(alt or caption)}">{cap}</figure>'


def facts(pairs: Sequence[tuple[str, str]]) -> str:
    """A two-column grid of label: value pairs (values are HTML)."""
    return '<dl class="facts">' + "".join(f"<dt>{esc(k)}</dt><dd>{v}</dd>" for k, v in pairs) + "</dl>"


def section(anchor: str, title: str, body: str) -> str:
    return f'<section id="{esc(anchor)}"><h2>{esc(title)}</h2>{body}</section>'


def note(text: str) -> str:
    return f'<p class="note">{text}</p>'


def page(title: str, subtitle: str, sections: Sequence[tuple[str, str, str]], footer: str) -> str:
    """The whole document: ``sections`` are (anchor, title, body HTML)."""
    nav = "".join(f'<a href="#{esc(a)}">{esc(t)}</a>' for a, t, _ in sections)
    body = "".join(section(a, t, b) for a, t, b in sections)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{esc(title)}</title><style>{CSS}</style></head><body>"
            f"<header><h1>{esc(title)}</h1><div class=\"sub\">{subtitle}</div></header><nav>{nav}</nav>"
            f"<main>{body}</main><footer>{footer}</footer></body></html>\n")


def card_html(markdown: str) -> str:
    """The card as HTML for the run report: CommonMark with tables, raw HTML in the card escaped, its
    title dropped and its headings one level down (the report gives the section its own heading)."""
    from markdown_it import MarkdownIt

    lines = markdown.splitlines()
    if lines and lines[0].startswith("# "):
        lines = lines[1:]
    text = "\n".join("#" + ln if ln.startswith("## ") else ln for ln in lines)
    return MarkdownIt("commonmark", {"html": False}).enable("table").render(text)
