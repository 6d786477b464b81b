"""eval's report for people: the AP table, the differences between arms and the example images as
eval.html, next to eval.json; and the text helpers the CLI's tables share with the page."""
from __future__ import annotations

import html
import json
from pathlib import Path

from ..detect.arms import B_SUFFIX, Arm, fused_arm
from ..detect.fusion import FUSE_IOU
from ..errors import OutputError
from .examples import SHOWN_CONF
from .scoring import VEHICLE


def _fmt(v) -> str:
    return "–" if v is None else f"{v:.3f}"


def fmt_interval(ci) -> str:
    return "" if not ci else f"[{ci[0]:.3f}, {ci[1]:.3f}]"


def fmt_signed(v) -> str:
    return "–" if v is None else f"{v:+.3f}"


def difference_rows(report: dict) -> list[tuple[str, str, str, str, str]]:
    """(arm pair, vehicle AP50 difference, its interval, mAP50 difference, its interval) per pair."""
    rows = []
    for d in (report.get("bootstrap") or {}).get("differences", []):
        rows.append((f"{d['a']} − {d['b']}", fmt_signed(d.get("vehicle_ap50_difference")),
                     fmt_interval(d["vehicle_ap50"]), fmt_signed(d.get("map50_difference")), fmt_interval(d["map50"])))
    return rows


def render_eval_html(report: dict) -> str:
    e = html.escape
    variants = list(report["results"])
    rows = ""
    for cls in report["classes"] + [VEHICLE]:
        pos = report["results"][Arm.RAW]["per_class"][cls]["positives"]
        cells = "".join(f"<td>{_fmt(report['results'][v]['per_class'][cls]['ap50'])}</td>" for v in variants)
        name = f"<b>{cls} (class-agnostic)</b>" if cls == VEHICLE else e(cls)
        rows += f"<tr><td>{name}</td><td>{pos}</td>{cells}</tr>"
    rows += "<tr><td><b>mAP50</b></td><td></td>" + "".join(
        f"<td><b>{_fmt(report['results'][v]['map50'])}</b></td>" for v in variants) + "</tr>"
    if report.get("bootstrap"):
        for key, label in (("vehicle_ap50_ci", "vehicle AP50 95 % interval"), ("map50_ci", "mAP50 95 % interval")):
            rows += f"<tr class=muted><td>{label}</td><td></td>" + "".join(
                f"<td>{fmt_interval(report['results'][v].get(key))}</td>" for v in variants) + "</tr>"
        diffs = "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in difference_rows(report))
        b = report["bootstrap"]
        differences = (f"<h2>Differences between arms</h2><p class=muted>{b['resamples']} bootstrap resamples of the "
                       f"images (the same resample for every arm), {b['level']:.0%} percentile intervals: an interval "
                       "that contains 0 means the lead may be noise.</p><table><tr><th>arms</th><th>vehicle AP50</th>"
                       f"<th>interval</th><th>mAP50</th><th>interval</th></tr>{diffs}</table>")
    else:
        differences = ""
    warnings = "".join(f"<p class=warn>warning: {e(w)}</p>" for w in report.get("warnings", []))
    arms_note = ""
    if report.get("detector_b"):
        arms_note += (f"<p>Arms without a tag: detector <b>{e(report['detector'])}</b>; arms tagged{e(B_SUFFIX)}: "
                      f"detector <b>{e(report['detector_b'])}</b>.</p>")
    if report.get("fuse"):
        method = "weighted box fusion" if report["fuse"] == "wbf" else "NMS"
        arms_note += (f"<p>Arms “{e(fused_arm('MODEL', report['fuse']))}”: one detector's detections on the raw "
                      f"image and on MODEL's output merged ({method}, IoU {FUSE_IOU[report['fuse']]}).</p>")
    per_frame_row = ("; the last row: each model's per-frame choice (the fog detector where the gate dehazed the "
                     "image, the base detector on the raw image elsewhere)") if report.get("fog_detector") else ""
    examples = "".join(f"<h3>{e(x['image'])}</h3><img alt='{e(x['image'])}' "
                       f"src='data:image/jpeg;base64,{x['image_jpeg_base64']}'>" for x in report["examples"])
    return f"""<!doctype html><html lang=en><head><meta charset=utf-8><title>cidstream eval</title>
<style>body{{font-family:system-ui,sans-serif;max-width:1560px;margin:2em auto;padding:0 1em}}
table{{border-collapse:collapse}}td,th{{border-bottom:1px solid #eee;padding:.3em .9em;text-align:right}}
td:first-child,th:first-child{{text-align:left}}img{{max-width:100%}}.muted{{color:#777}}
.warn{{background:#fff4e5;border-left:4px solid #d97706;padding:.5em .8em}}</style></head><body>
<h1>Detection AP50: raw vs dehazed</h1>{arms_note}
<p class=muted>{report['images']} images from {e(report['images_source'])} ({e(report.get('split', 'all'))}) · labels {e(report['labels'])}
({report['label_format']}) · detector {e(report['detector'])} · imgsz {report['imgsz']}, conf {report['conf']},
NMS IoU {report['iou']} · {e(report['ap'])} AP at IoU {report['iou_threshold']} · {e(report['created'])}</p>
{warnings}<table><tr><th>class</th><th>GT boxes</th>{''.join(f'<th>{e(v)}</th>' for v in variants)}</tr>{rows}</table>
{differences}
<h2>Examples</h2><p class=muted>White: ground truth. Coloured: detections with confidence ≥ {SHOWN_CONF}. One row per
detector{per_frame_row}.</p>{examples}
</body></html>"""


def write_eval(folder: Path, report: dict) -> tuple[Path, Path]:
    """eval.json (the examples by name only: their pictures are in the page) and eval.html."""
    from ..io.atomic import check_writable_folder

    folder = Path(folder)
    check_writable_folder(folder, "eval output folder")
    slim = dict(report, examples=[{"image": x["image"]} for x in report["examples"]])
    try:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "eval.json").write_text(json.dumps(slim, indent=1), encoding="utf-8")
        (folder / "eval.html").write_text(render_eval_html(report), encoding="utf-8")
    except OSError as exc:
        raise OutputError(f"cannot write the eval results into {folder}: {exc.strerror or exc}") from None
    return folder / "eval.json", folder / "eval.html"
