"""Render report blocks as Markdown and as one self-contained HTML page.

A block is ``("h1" | "h2" | "p", text)``, ``("table", head, rows)`` or
``("fig", png_path, caption)``.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

__all__ = ["Block", "to_html", "to_markdown"]

Block = tuple[Any, ...]


def to_markdown(blocks: list[Block], root: Path) -> str:
    """Markdown of ``blocks``, figures linked relative to ``root``."""
    lines: list[str] = []
    for b in blocks:
        if b[0] == "h1":
            lines += [f"# {b[1]}", ""]
        elif b[0] == "h2":
            lines += [f"## {b[1]}", ""]
        elif b[0] == "p":
            lines += [b[1], ""]
        elif b[0] == "table":
            lines.append("| " + " | ".join(b[1]) + " |")
            lines.append("|" + "---|" * len(b[1]))
            lines += ["| " + " | ".join(row) + " |" for row in b[2]]
            lines.append("")
        elif b[0] == "fig":
            rel = Path(b[1]).relative_to(root).as_posix()
            lines += [f"![{b[2]}]({rel})", "", f"*{b[2]}* ([PDF]({rel[:-4]}.pdf))", ""]
    return "\n".join(lines)


def _inline(text: str) -> str:
    """Escape text and render the Markdown **bold** and `code` used in paragraphs."""
    parts = html.escape(text).split("**")
    text = "".join(f"<b>{p}</b>" if i % 2 else p for i, p in enumerate(parts))
    parts = text.split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


def to_html(blocks: list[Block]) -> str:
    """One self-contained HTML page of ``blocks`` (figures embedded as base64 PNG)."""
    body: list[str] = []
    for b in blocks:
        if b[0] in ("h1", "h2"):
            body.append(f"<{b[0]}>{html.escape(b[1])}</{b[0]}>")
        elif b[0] == "p":
            body.append(f"<p>{_inline(b[1])}</p>")
        elif b[0] == "table":
            head = "".join(f"<th>{html.escape(h)}</th>" for h in b[1])
            rows = "".join(
                "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
                for row in b[2]
            )
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        elif b[0] == "fig":
            data = base64.b64encode(Path(b[1]).read_bytes()).decode("ascii")
            cap = html.escape(b[2])
            body.append(
                f'<figure><img alt="{cap}" src="data:image/png;base64,{data}">'
                f"<figcaption>{cap}</figcaption></figure>"
            )
    style = (
        "body{font-family:sans-serif;max-width:1100px;margin:auto}"
        "table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #999;padding:2px 8px}"
        "img{max-width:800px}"
    )
    return (
        "<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>paratag evaluation</title>"
        f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    )
