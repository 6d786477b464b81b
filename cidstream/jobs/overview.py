"""batch_report.json and batch_report.html: every file of the batch, from the ledger, plus this run's speed."""
from __future__ import annotations

import datetime as dt
import html
import json
from pathlib import Path

from .. import __version__
from ..detect.arms import Arm
from ..sinks.report import CSS, UNLABELLED_NOTE, file_href
from .jobs import Job
from ..io.atomic import write_atomic
from .ledger import DONE, FAILED, Ledger
from .runner import JobsResult


def build_batch_report(jobs: list[Job], ledger: Ledger, result: JobsResult, meta: dict) -> dict:
    ran_now = {job.key for job, _ in result.done} | {job.key for job, _ in result.failed}
    files, vehicles = [], {}
    for job in jobs:
        e = ledger.get(job.key) or {}
        row = {"input": job.input, "output": job.output, "state": e.get("state", "pending"),
               "this_run": job.key in ran_now, "frames": e.get("frames"), "seconds": e.get("seconds"),
               "error": e.get("error") if e.get("state") == FAILED else None, "summary": e.get("summary")}
        if row["frames"] and e.get("pipeline_seconds"):
            row["fps"] = round(row["frames"] / e["pipeline_seconds"], 2)
        files.append(row)
        if row["state"] == DONE and row["summary"]:
            for k in (Arm.RAW, Arm.DEHAZED):
                if k in row["summary"]:
                    vehicles[k] = vehicles.get(k, 0) + row["summary"][k]
    if Arm.RAW in vehicles:
        vehicles["difference"] = vehicles[Arm.DEHAZED] - vehicles[Arm.RAW]
        vehicles["relative_change"] = (round(vehicles["difference"] / vehicles[Arm.RAW], 4)
                                       if vehicles[Arm.RAW] else None)
    states = [f["state"] for f in files]
    return {
        "cidstream_version": __version__, "created": dt.datetime.now().isoformat(timespec="seconds"), **meta,
        "totals": {"files": len(files), "done": states.count(DONE), "failed": states.count(FAILED),
                   "pending": len(files) - states.count(DONE) - states.count(FAILED),
                   "vehicles": vehicles or None},
        "this_run": {"files_done": len(result.done), "files_failed": len(result.failed),
                     "frames": result.frames, "seconds": round(result.seconds, 2),
                     "fps": round(result.fps, 2) if result.frames else None,  # nothing ran: no speed to give
                     "engine_start_s": round(meta.pop("engine_start_s", 0.0), 2),
                     "worker_retries": result.retries, "interrupted": result.interrupted,
                     "overhead_per_file_s": (round(sum(result.overhead_s) / len(result.overhead_s), 3)
                                             if result.overhead_s else None)},
        "files": files,
    }


def render_batch_html(report: dict) -> str:
    e = html.escape
    t, r = report["totals"], report["this_run"]
    v = t["vehicles"] or {}
    cards = [f"<div class=card>files done<b>{t['done']} / {t['files']}</b>{t['failed']} failed, "
             f"{t['pending']} pending</div>",
             f"<div class=card>this run<b>{r['fps']:.1f} fps</b>{r['frames']} frames in {r['seconds']:.0f} s</div>"
             if r["fps"] is not None else "<div class=card>this run<b>nothing ran</b>every file was done earlier or "
                                          "failed to start</div>"]
    if Arm.RAW in v:
        rel = f" ({v['relative_change']:+.1%})" if v.get("relative_change") is not None else ""
        cards.append(f"<div class=card>detections dehazed − raw<b>{v['difference']:+d}{rel}</b>"
                     f"{v[Arm.RAW]} raw, {v[Arm.DEHAZED]} dehazed</div>")
    elif Arm.DEHAZED in v:
        cards.append(f"<div class=card>vehicles (dehazed)<b>{v[Arm.DEHAZED]}</b>detections over all frames</div>")
    compare = Arm.RAW in v
    head = "<tr><th>file</th><th>state</th><th>frames</th><th>fps</th>" + \
           (f"<th>{Arm.RAW}</th><th>{Arm.DEHAZED}</th><th>difference</th>" if compare else
            "<th>vehicles</th>" if v else "") + "<th>output / error</th></tr>"
    rows = []
    for f in report["files"]:
        s = f["summary"] or {}
        state_cls = {"done": "up", "failed": "down"}.get(f["state"], "")
        cells = [e(Path(f["input"]).name), f"<span class={state_cls}>{e(f['state'])}</span>"
                 + ("" if f["this_run"] or f["state"] != DONE else " <span class=muted>(earlier)</span>"),
                 str(f["frames"] or "–"), str(f.get("fps", "–"))]
        if compare:
            cells += [str(s.get(Arm.RAW, "–")), str(s.get(Arm.DEHAZED, "–")),
                      f"{s['difference']:+d}" if "difference" in s else "–"]
        elif v:
            cells.append(str(s.get(Arm.DEHAZED, "–")))
        if f["state"] == FAILED:
            cells.append(f"<span class=down>{e(f['error'] or '')}</span>")
        else:
            link = file_href(Path(f["output"]) / "report.html" if s else f["output"])
            cells.append(f"<a href='{e(link)}'>{e(f['output'])}</a>" if f["state"] == DONE else "")
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return f"""<!doctype html><html lang=en><head><meta charset=utf-8><title>cidstream batch report</title>
<style>{CSS}</style></head><body>
<h1>Batch report</h1>
<p class=muted>{e(', '.join(report['inputs']))} → {e(report['output_dir'])} · model <b>{e(str(report['model']))}</b>
· {e(report['engine'])} · {e(report['created'])} · cidstream {e(report['cidstream_version'])}</p>
<div class=cards>{''.join(cards)}</div>
<h2>Files</h2><table>{head}{''.join(rows)}</table>
<p class=muted>States come from ledger.json; "(earlier)" marks files finished by an earlier run with the same
settings. fps is frames over the time the file's pipeline ran (model loading not included). Each file's detection report is in its folder.</p>
{f"<p class=muted>{UNLABELLED_NOTE}</p>" if compare else ""}
</body></html>"""


def write_batch_report(folder: Path, report: dict) -> tuple[Path, Path]:
    json_path, html_path = Path(folder) / "batch_report.json", Path(folder) / "batch_report.html"
    write_atomic(json_path, json.dumps(report, indent=1))
    write_atomic(html_path, render_batch_html(report))
    return json_path, html_path
