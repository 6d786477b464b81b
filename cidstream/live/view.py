"""What `cidstream live` shows: a per-camera table (terminal) or status lines (logs), and the summary."""
from __future__ import annotations

from rich.table import Table

STATE_STYLE = {"streaming": "green", "connecting": "yellow", "waiting": "yellow", "failed": "red", "stopped": "dim"}


def _ms(x) -> str:
    return "–" if x is None else f"{x:.0f}"


def _visibility(c: dict) -> str:
    v = c.get("visibility_m")
    if v is None:
        return "–"
    text = f"{v / 1000:.1f} km" if v >= 1000 else f"{v:.0f} m"
    return text + (" (fog)" if c.get("fog") else "")


def status_table(cams: list[dict], title: str = "cameras") -> Table:
    table = Table(title=title, title_justify="left")
    for col, just in (("camera", "left"), ("state", "left"), ("fps", "right"), ("processed", "right"),
                      ("dropped", "right"), ("latency p50/p95 ms", "right"), ("visibility", "right"),
                      ("reconnects", "right"),
                      ("segments", "right"), ("last problem", "left")):
        table.add_column(col, justify=just)
    for c in cams:
        style = STATE_STYLE.get(c["state"], "")
        table.add_row(c["name"], f"[{style}]{c['state']}[/]" if style else c["state"], f"{c['fps']:.1f}",
                      str(c["processed"]), f"{c['dropped']} ({c['drop_rate']:.0%})",
                      f"{_ms(c['latency_ms_p50'])} / {_ms(c['latency_ms_p95'])}", _visibility(c),
                      f"{c['reconnects']}" + (f" ({c['watchdog_fires']} watchdog)" if c["watchdog_fires"] else ""),
                      str(len(c["segments"])), (c["error"] or "")[:60])
    return table


def status_line(c: dict) -> str:
    return (f"{c['name']}: {c['state']}, {c['fps']:.1f} fps, processed {c['processed']}, dropped {c['dropped']} "
            f"({c['drop_rate']:.1%}), latency p50 {_ms(c['latency_ms_p50'])} ms p95 {_ms(c['latency_ms_p95'])} ms, "
            f"visibility {_visibility(c)}, reconnects {c['reconnects']}"
            + (f", last problem: {c['error']}" if c["error"] else ""))
