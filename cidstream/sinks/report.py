"""report.json and report.html: does dehazing make the detector find more vehicles, and how many?"""
from __future__ import annotations

import base64
import datetime as dt
import heapq
import html
import io
import json
from pathlib import Path, PurePath
from urllib.parse import quote

import cv2
import numpy as np

from .. import __version__
from ..engine.haze import VIS_MAX_M, VIS_MIN_M, gate_counts
from ..frames import BatchResult
from ..io.atomic import write_atomic
from .base import Sink
from ..detect.arms import Arm, b_tagged
from ..detect.detections import Detections, box_iou
from ..detect.draw import side_by_side

CONF_BINS = np.linspace(0.0, 1.0, 21)
HIGHLIGHTS = 3


def match_counts(a: Detections, b: Detections, iou: float = 0.5) -> tuple[int, int, int]:
    """Greedy same-class matching by IoU: (matched, only in a, only in b)."""
    if len(a) == 0 or len(b) == 0:
        return 0, len(a), len(b)
    ious = box_iou(a.xyxy, b.xyxy)
    ious[a.class_id[:, None] != b.class_id[None, :]] = 0.0
    matched = 0
    used_a, used_b = set(), set()
    for flat in np.argsort(-ious, axis=None):
        i, j = np.unravel_index(flat, ious.shape)
        if ious[i, j] < iou:
            break
        if i in used_a or j in used_b:
            continue
        used_a.add(i)
        used_b.add(j)
        matched += 1
    return matched, len(a) - matched, len(b) - matched


def _thumbnail(image: np.ndarray, width: int = 960) -> str:
    h, w = image.shape[:2]
    if w > width:
        image = cv2.resize(image, (width, round(h * width / w)), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 82])
    return base64.b64encode(buf.tobytes()).decode("ascii") if ok else ""


class ReportCollector(Sink):
    """Accumulates what the report needs, frame by frame, in memory that stays small on long runs
    (per-frame counts, per-class totals, confidence histograms, a few highlight thumbnails)."""

    needs = frozenset()  # pixels only for the few highlight frames, fetched when kept

    def __init__(self, names: dict[int, str], compare: bool, extra: tuple[str, ...] = ()):
        self.names, self.compare = names, compare
        self.streams = ((Arm.RAW, Arm.DEHAZED) if compare else (Arm.DEHAZED,)) + tuple(extra)
        self.frame_index: list[int] = []
        self.times: list[float | None] = []
        self.counts = {s: [] for s in self.streams}
        self.per_class = {s: {} for s in self.streams}
        self.conf_hist = {s: np.zeros(len(CONF_BINS) - 1, np.int64) for s in self.streams}
        self.conf_sum = {s: 0.0 for s in self.streams}
        self.agreement = {"matched": 0, "raw_only": 0, "dehazed_only": 0}
        self.visibility: list[float] = []   # per frame, from the haze gate (engine/haze.py)
        self.steady: list[float] = []       # the stream's smoothed visibility the gate followed (steady_gate.py)
        self.gate: list[float] = []
        self.frames_raw = 0       # haze gate counts (engine/haze.py gate_counts), as RunStats counts them
        self.frames_blended = 0
        self._more: list = []   # min-heaps of (gain, frame, thumbnail)
        self._fewer: list = []

    def write_result(self, result: BatchResult) -> None:
        dets = {s: result.stream(s) for s in self.streams}
        haze = result.haze
        if haze is not None:
            raw, blended = gate_counts(haze.strength)
            self.frames_raw += raw
            self.frames_blended += blended
        for i, frame in enumerate(result.batch.frames):
            self.frame_index.append(frame.index)
            self.times.append(frame.time)
            h = result.haze_record(i)
            if h:
                self.visibility.append(h["visibility_m"])
                self.steady.append(h.get("visibility_steady_m", h["visibility_m"]))
                self.gate.append(h["gate"])   # rounded for the report; counted above on the exact strengths
            for s in self.streams:
                d: Detections = dets[s][i]
                self.counts[s].append(len(d))
                for cid in d.class_id:
                    name = self.names[int(cid)]
                    self.per_class[s][name] = self.per_class[s].get(name, 0) + 1
                self.conf_hist[s] += np.histogram(d.confidence, bins=CONF_BINS)[0]
                self.conf_sum[s] += float(d.confidence.sum())
            if self.compare:
                m, r, dh = match_counts(dets[Arm.RAW][i], dets[Arm.DEHAZED][i])
                self.agreement["matched"] += m
                self.agreement["raw_only"] += r
                self.agreement["dehazed_only"] += dh
                gain = len(dets[Arm.DEHAZED][i]) - len(dets[Arm.RAW][i])
                self._keep(self._more if gain > 0 else self._fewer, abs(gain), frame, result, i)
            self.written += 1

    def _keep(self, heap, score, frame, result, i):
        if score == 0 or (len(heap) >= HIGHLIGHTS and score <= heap[0][0]):
            return
        thumb = _thumbnail(side_by_side(result.raw[i], result.dehazed[i], result.raw_detections[i],
                                        result.detections[i], self.names))
        item = (score, -frame.index, frame.index, thumb)
        heapq.heappush(heap, item) if len(heap) < HIGHLIGHTS else heapq.heapreplace(heap, item)

    def highlights(self, which: str) -> list[dict]:
        heap = self._more if which == "more" else self._fewer
        return [{"frame": f, "difference": s if which == "more" else -s, "image_jpeg_base64": t}
                for s, _, f, t in sorted(heap, reverse=True)]


def build_report(col: ReportCollector, meta: dict, stats, tracking: dict | None = None) -> dict:
    """The report as plain data; every number comes from what the collector saw."""
    n = len(col.frame_index)
    totals = {}
    for s in col.streams:
        c = np.asarray(col.counts[s])
        total = int(c.sum())
        totals[s] = {"vehicles": total, "per_frame_mean": round(float(c.mean()), 3) if n else 0.0,
                     "per_frame_max": int(c.max()) if n else 0, "per_class": dict(sorted(col.per_class[s].items())),
                     "mean_confidence": round(col.conf_sum[s] / total, 4) if total else None,
                     "confidence_histogram": col.conf_hist[s].tolist()}
    report = {"cidstream_version": __version__, "created": dt.datetime.now().isoformat(timespec="seconds"),
              **meta, "frames": n, "compare": col.compare, "totals": totals,
              "per_frame": {"frame": col.frame_index, "time": col.times, **{s: col.counts[s] for s in col.streams}},
              "confidence_bins": [round(float(b), 2) for b in CONF_BINS]}
    if col.compare:
        raw, deh = np.asarray(col.counts[Arm.RAW]), np.asarray(col.counts[Arm.DEHAZED])
        a = col.agreement
        union = a["matched"] + a["raw_only"] + a["dehazed_only"]
        raw_total, dehazed_total = totals[Arm.RAW]["vehicles"], totals[Arm.DEHAZED]["vehicles"]
        report["comparison"] = {
            "difference": dehazed_total - raw_total,
            "relative_change": round((dehazed_total - raw_total) / raw_total, 4) if raw_total else None,
            "frames_more": int((deh > raw).sum()), "frames_fewer": int((deh < raw).sum()),
            "frames_equal": int((deh == raw).sum()),
            "agreement": {**a, "iou": 0.5, "rate": round(a["matched"] / union, 4) if union else None},
            "highlights_more": col.highlights("more"), "highlights_fewer": col.highlights("fewer"),
        }
    if col.visibility:
        v, g = np.asarray(col.visibility), np.asarray(col.gate)
        gated = col.frames_raw + col.frames_blended
        report["haze"] = {"visibility_m_median": round(float(np.median(v)), 1),
                          "visibility_m_min": round(float(v.min()), 1),
                          "visibility_steady_m_median": round(float(np.median(col.steady)), 1),
                          "frames_gated": gated, "frames_raw": col.frames_raw, "frames_blended": col.frames_blended,
                          "share_gated": round(gated / len(g), 4), "gate_mean": round(float(g.mean()), 4),
                          "per_frame_visibility_m": col.visibility, "per_frame_visibility_steady_m": col.steady,
                          "per_frame_gate": col.gate}
    if tracking:
        report["unique_vehicles"] = tracking
    if stats is not None:
        report["speed"] = {
            "end_to_end_fps": round(stats.fps, 2), "seconds": round(stats.seconds, 2),
            **{f"{k}_fps": round(stats.stage_fps(k), 2) for k in stats.stage_seconds},
            "detector_share": round(stats.stage_seconds["detect"] / stats.seconds, 4) if stats.seconds else None,
            "interrupted": stats.interrupted}
    return report


SPEED_LABELS = {"end_to_end_fps": "end to end", "seconds": "run time", "decode_fps": "decoding",
                "dehaze_fps": "dehazing", "detect_fps": "detection", "write_fps": "writing",
                "detector_share": "detector's share of the run", "interrupted": "interrupted (Ctrl-C)"}


def _metres(v: float) -> str:
    return f"{v / 1000:.1f} km" if v >= 1000 else f"{v:.0f} m"


def _number(v: float) -> str:
    """Rounded for reading, no exponent: 0.64, 3.2, 12.3, 1,234."""
    if v >= 100:
        return f"{v:,.0f}"
    return f"{v:.1f}" if v >= 10 else (f"{v:.2f}".rstrip("0").rstrip(".") or "0")


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{_number(seconds)} s"
    minutes, sec = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {sec:02d} s"


def speed_rows_for_people(speed: dict) -> list[tuple[str, str]]:
    """The report's speed figures as (label, text) rows: fps and durations rounded with units, shares as
    percentages, flags as yes/no, and '–' for a stage that did not run."""
    rows = []
    for key, value in speed.items():
        label = SPEED_LABELS.get(key) or key.removesuffix("_fps").replace("_", " ")
        if value is None:
            text = "–"
        elif isinstance(value, bool):
            text = "yes" if value else "no"
        elif key.endswith("_fps"):
            text = f"{_number(value)} fps" if value > 0 else "–"
        elif key == "seconds":
            text = _duration(value)
        elif key.endswith("_share"):
            text = f"{value:.0%}"
        else:
            text = _number(value) if isinstance(value, (int, float)) else str(value)
        rows.append((label, text))
    return rows


STREAM_COLORS = ("#8c8c8c", "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e")
# Each arm as people read it (the page's cards, the run summary): the second detector's as the base one's, tagged.
_FUSED_LABEL = f"fused {Arm.RAW}+{Arm.DEHAZED}"
ARM_LABELS = {Arm.RAW: str(Arm.RAW), Arm.DEHAZED: str(Arm.DEHAZED), Arm.RAW_B: b_tagged(Arm.RAW),
              Arm.DEHAZED_B: b_tagged(Arm.DEHAZED), Arm.FUSED: _FUSED_LABEL, Arm.FUSED_B: b_tagged(_FUSED_LABEL)}


# Meteorological fog bands for the visibility plot: (upper bound in metres, name, shade), widest first.
VISIBILITY_BANDS = ((1000, "fog < 1 km", 0.08), (200, "thick fog < 200 m", 0.12), (50, "dense fog < 50 m", 0.18))


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _plots(report: dict) -> dict[str, str]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    streams = list(report["totals"])
    colors = dict(zip(streams, STREAM_COLORS))
    pf = report["per_frame"]
    x = [t if t is not None else f for t, f in zip(pf["time"], pf["frame"])]
    xlabel = "time (s)" if pf["time"] and pf["time"][0] is not None else "frame"
    out = {}
    fig, ax = plt.subplots(figsize=(9, 3.2))
    for s in streams:
        ax.plot(x, pf[s], label=s, color=colors[s], lw=1.4)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("vehicles per frame")
    ax.legend()
    ax.grid(alpha=0.3)
    out["timeline"] = _png(fig)

    haze = report.get("haze") or {}
    vis = haze.get("per_frame_visibility_m")
    if vis:
        fig, ax = plt.subplots(figsize=(9, 2.8))
        for top, name, shade in VISIBILITY_BANDS:
            ax.axhspan(VIS_MIN_M, top, color="#1f77b4", alpha=shade, lw=0)
            ax.text(x[0], top * 0.8, name, fontsize=8, va="top", color="#1f4e79")
        steady = haze.get("per_frame_visibility_steady_m") or vis
        ax.plot(x[:len(vis)], vis, color="grey", lw=0.6, alpha=0.6, label="per frame")
        ax.plot(x[:len(steady)], steady, color="black", lw=1.4, label="steady (what the gate follows)")
        ax.legend(fontsize=8, loc="lower right")
        ax.set_yscale("log")
        ax.set_ylim(VIS_MIN_M, VIS_MAX_M * 1.2)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("visibility (m)")
        ax.grid(alpha=0.3, which="both")
        out["visibility"] = _png(fig)

    classes = sorted({c for s in streams for c in report["totals"][s]["per_class"]})
    fig, ax = plt.subplots(figsize=(6, 3.2))
    width = 0.8 / len(streams)
    for k, s in enumerate(streams):
        ax.bar(np.arange(len(classes)) + k * width, [report["totals"][s]["per_class"].get(c, 0) for c in classes],
               width, label=s, color=colors[s])
    ax.set_xticks(np.arange(len(classes)) + width * (len(streams) - 1) / 2, classes)
    ax.set_ylabel("detections (all frames)")
    ax.legend()
    out["classes"] = _png(fig)

    fig, ax = plt.subplots(figsize=(6, 3.2))
    bins = np.asarray(report["confidence_bins"])
    for s in streams:
        ax.stairs(report["totals"][s]["confidence_histogram"], bins, label=s, color=colors[s], lw=1.6)
    ax.set_xlabel("confidence")
    ax.set_ylabel("detections")
    ax.legend()
    out["confidence"] = _png(fig)
    return out


CSS = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222;padding:0 1em}
h1{font-size:1.6em}h2{font-size:1.2em;margin-top:1.8em;border-bottom:1px solid #ddd}
.cards{display:flex;gap:1em;flex-wrap:wrap}.card{border:1px solid #ddd;border-radius:8px;padding:.8em 1.2em;min-width:150px}
.card b{display:block;font-size:1.6em}.up{color:#1a7f37}.down{color:#cf222e}
table{border-collapse:collapse}td,th{border-bottom:1px solid #eee;padding:.3em .8em;text-align:right}
th:first-child,td:first-child{text-align:left}img{max-width:100%}.muted{color:#777;font-size:.9em}"""


UNLABELLED_NOTE = ("Without labels, more boxes is not more vehicles found: a box only the dehazed frame has may be a "
                   "vehicle the haze hid or a false detection, and a box only the raw frame has may be a vehicle "
                   "dehazing lost or a false one it removed. Agreement says how often both found the same box. "
                   "Whether dehazing finds more real vehicles is measured on labelled images: cidstream eval.")


def file_href(path: str | PurePath) -> str:
    """A link from an HTML report to a file below its folder, built from the path's parts: each part
    percent-encoded and the whole prefixed with ./, so no name ('javascript:alert(1).mp4',
    '//host/x') can make it a script, another site or an absolute path."""
    path = PurePath(path)
    parts = path.parts[1:] if path.anchor else path.parts  # below the page's folder, never from a root
    return "./" + "/".join(quote(part, safe="") for part in parts)


def render_html(report: dict) -> str:
    plots = _plots(report)
    e = html.escape
    t = report["totals"]
    cmp_ = report.get("comparison")
    cards = []
    if cmp_:
        diff = cmp_["difference"]
        rel = f" ({cmp_['relative_change']:+.1%})" if cmp_["relative_change"] is not None else ""
        # Neither green nor red: without labels more boxes is not more vehicles found (see UNLABELLED_NOTE).
        cards.append(f"<div class=card>dehazed − raw<b>{diff:+d}{rel}</b>detections over all frames</div>")
    for s in t:  # every arm side by side: raw, dehazed, and the extra ones
        cards.append(f"<div class=card>{e(ARM_LABELS.get(s, s))}<b>{t[s]['vehicles']}</b>"
                     f"{t[s]['per_frame_mean']:.2f} per frame</div>")
    if cmp_:
        cards.append(f"<div class=card>frames with more / fewer<b>{cmp_['frames_more']} / {cmp_['frames_fewer']}"
                     f"</b>of {report['frames']} ({cmp_['frames_equal']} equal)</div>")
        ag = cmp_["agreement"]
        rate = "n/a" if ag["rate"] is None else f"{ag['rate']:.0%}"
        cards.append(f"<div class=card>agreement<b>{rate}</b>boxes found in both (IoU ≥ 0.5); "
                     f"{ag['raw_only']} only raw, {ag['dehazed_only']} only dehazed</div>")
    if report.get("haze"):
        hz = report["haze"]
        full = report["frames"] - hz["frames_gated"]
        cards.append(f"<div class=card>visibility (median / min)<b>{_metres(hz['visibility_m_median'])} / "
                     f"{_metres(hz['visibility_m_min'])}</b>frames dehazed fully {full}, blended "
                     f"{hz['frames_blended']}, left raw {hz['frames_raw']}</div>")
    if report.get("unique_vehicles"):
        u = report["unique_vehicles"]
        cards.append("<div class=card>unique vehicles (tracked)<b>" + " / ".join(str(u[k]) for k in u) +
                     "</b>" + " / ".join(u) + "</div>")
    streams = list(t)
    classes = sorted({c for s in streams for c in t[s]["per_class"]})
    rows = "".join(f"<tr><td>{e(c)}</td>" + "".join(f"<td>{t[s]['per_class'].get(c, 0)}</td>" for s in streams)
                   + "</tr>" for c in classes)
    rows += "<tr><td><b>all</b></td>" + "".join(f"<td><b>{t[s]['vehicles']}</b></td>" for s in streams) + "</tr>"
    rows += "<tr><td>mean confidence</td>" + "".join(
        f"<td>{t[s]['mean_confidence'] if t[s]['mean_confidence'] is not None else '–'}</td>" for s in streams) + "</tr>"
    class_table = f"<table><tr><th>class</th>{''.join(f'<th>{e(s)}</th>' for s in streams)}</tr>{rows}</table>"
    arms = report.get("arms") or {}
    arms_note = ""
    if arms.get("detector_b"):
        arms_note += f" · arms _b: detector <b>{e(arms['detector_b'])}</b>"
    if arms.get("fuse"):
        arms_note += f" · fused: raw and dehazed detections merged by {e(arms['fuse'].upper())}"
    fog = report.get("fog_detector")
    if fog:
        arms_note += (f" · dehazed: per frame, fog detector <b>{e(fog['detector'])}</b> ({e(fog['view'])} view) on "
                      f"frames the gate dehazed, {e(report['detector'])} on the raw frame of the others")
    highlights = ""
    if cmp_:
        for key, title in (("highlights_more", "Frames where dehazing found more"),
                           ("highlights_fewer", "Frames where dehazing found fewer")):
            items = cmp_[key]
            highlights += f"<h2>{title}</h2>"
            if not items:
                highlights += "<p class=muted>none</p>"
            for h in items:
                highlights += (f"<p>frame {h['frame']}: {h['difference']:+d}</p>"
                               f"<img alt='frame {h['frame']}' src='data:image/jpeg;base64,{h['image_jpeg_base64']}'>")
    visibility = ""
    if "visibility" in plots:
        visibility = ("<h2>Visibility</h2><p class=muted>Each frame's visibility as the haze gate measures it, "
                      "with the bands fog &lt; 1 km, thick fog &lt; 200 m, dense fog &lt; 50 m.</p>"
                      f"<img alt='visibility over time' src='data:image/png;base64,{plots['visibility']}'>")
    speed_rows = "".join(f"<tr><td>{e(k)}</td><td>{e(v)}</td></tr>" for k, v in speed_rows_for_people(
        report.get("speed") or {}))
    return f"""<!doctype html><html lang=en><head><meta charset=utf-8><title>cidstream report: {e(str(report['input']))}</title>
<style>{CSS}</style></head><body>
<h1>Detection with vs without dehazing</h1>
<p class=muted>{e(str(report['input']))} · model <b>{e(str(report['model']))}</b> · detector <b>{e(str(report['detector']))}</b>
· classes {e(', '.join(report['classes']))} · confidence ≥ {report['conf']} · {report['frames']} frames
· {e(report['created'])} · cidstream {e(report['cidstream_version'])}{arms_note}</p>
<div class=cards>{''.join(cards)}</div>
{f"<p class=muted>{UNLABELLED_NOTE}</p>" if cmp_ else ""}
<h2>Vehicles per frame</h2><img alt='vehicles per frame' src='data:image/png;base64,{plots['timeline']}'>
{visibility}<h2>Per class</h2><div class=cards><div>{class_table}</div>
<img alt='per class' style='max-width:520px' src='data:image/png;base64,{plots['classes']}'></div>
<h2>Confidence</h2><img alt='confidence' style='max-width:560px' src='data:image/png;base64,{plots['confidence']}'>
{highlights}
<h2>Speed</h2><table>{speed_rows}</table>
<p class=muted>Stage fps are frames divided by the time each stage was busy; detector share is detector time over
end-to-end time. Detections in detections.jsonl; this page is made from the same results.</p>
</body></html>"""


def write_report(folder: Path, report: dict) -> tuple[Path, Path]:
    folder = Path(folder)
    json_path, html_path = folder / "report.json", folder / "report.html"
    slim = json.loads(json.dumps(report))  # the JSON keeps frame numbers; thumbnails live in the HTML only
    for key in ("highlights_more", "highlights_fewer"):
        for item in slim.get("comparison", {}).get(key, []):
            item.pop("image_jpeg_base64", None)
    write_atomic(json_path, json.dumps(slim, indent=1))  # a full disk leaves the old report or none, never half
    write_atomic(html_path, render_html(report))
    return json_path, html_path
