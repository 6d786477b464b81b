"""What the terminal shows at the end of a run or a benchmark."""
from __future__ import annotations

import statistics

from rich.table import Table

from .redact import redact_url


def _pct(values, q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


SKIPPED_LISTED = 10  # skipped input files named one by one; the rest are counted


def gate_line(frames: int, left_raw: int, blended: int, haze: dict | None = None) -> str:
    """The haze gate's work in one line of plain words: how many frames were dehazed fully, how many blended
    with the raw frame, how many left untouched, and the visibility the meter read."""
    full = frames - left_raw - blended
    parts = [f"{n} {what}" for n, what in ((full, "dehazed fully"),
                                             (blended, "blended with the raw frame (light haze)"),
                                             (left_raw, "left raw (measured clear)")) if n]
    text = f"of {frames} frames: " + ", ".join(parts)
    if haze:
        text += f"; visibility median {haze['visibility_m_median']:.0f} m, min {haze['visibility_m_min']:.0f} m"
    return text + (" (--gate off dehazes every frame)" if left_raw or blended else "")


def print_run_summary(console, input_spec, sink, dehazer, stats, total, error, report=None, folder=None,
                      skipped=(), duration=None) -> None:
    """``skipped``: (path, reason) of inputs that could not be read; ``duration``: the run's --duration."""
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    written = sink.written
    if error is not None:
        status = "[red]failed[/] (error below)"
    elif stats is not None and stats.interrupted:
        status = ("[yellow]interrupted[/] (output finalized with every processed frame)" if written else
                  "[yellow]interrupted[/] before any frame was processed: nothing was written")
    elif skipped:
        status = f"[yellow]done with errors[/]: {len(skipped)} input file(s) could not be read and were skipped"
    elif stats is not None and stats.stopped == "duration":
        status = f"[green]done[/]: stopped after --duration {duration:g} s" if duration else "[green]done[/]"
    else:
        status = "[green]done[/]"
    table.add_row("status", status)
    table.add_row("input", redact_url(input_spec))
    if not sink.path:
        table.add_row("output", "none (null sink)")
    elif sink.discarded:  # cut short (a full disk): removed, as it would not play
        table.add_row("output", f"nothing kept: {sink.path} could not be completed")
    elif written:
        table.add_row("output", str(sink.path))
    else:  # an empty video is deleted on close; nothing there is ours to point at
        table.add_row("output", "nothing written")
    table.add_row("model", f"{dehazer.name} on {dehazer.device} ({dehazer.compute})")
    finished = error is None and stats is not None and not stats.interrupted and not skipped and \
        stats.stopped is None
    if total and finished and written != total:  # edit lists make header counts differ from decodable frames
        frames = f"{written} (the container header announced {total})"
    else:
        frames = f"{written}" + (f" of {total}" if total else "")
    table.add_row("frames", frames)
    if skipped:
        lines = [str(reason) for _, reason in list(skipped)[:SKIPPED_LISTED]]
        if len(skipped) > SKIPPED_LISTED:
            lines.append(f"... and {len(skipped) - SKIPPED_LISTED} more")
        table.add_row("skipped", "\n".join(lines))
    if stats is not None and stats.frames:
        table.add_row("time", f"{stats.seconds:.1f} s, {stats.fps:.1f} fps end to end "
                              f"(model alone {stats.model_fps:.1f} fps)")
        if stats.dropped:
            table.add_row("dropped", f"{stats.dropped} frames (live source, drop-oldest)")
        if stats.frames_left_raw or stats.frames_blended or dehazer.gate.policy != "off":
            # Say it where the user looks: footage that the gate reads as clear is not dehazed at all.
            table.add_row("haze gate", gate_line(stats.frames, stats.frames_left_raw, stats.frames_blended,
                                                 (report or {}).get("haze")))
        if stats.latencies_ms:
            table.add_row("latency", f"p50 {statistics.median(stats.latencies_ms):.0f} ms, "
                                     f"p95 {_pct(stats.latencies_ms, 0.95):.0f} ms (decode to written)")
    if report is not None:
        t = report["totals"]
        if "raw" in t:
            c = report["comparison"]
            rel = f" ({c['relative_change']:+.1%})" if c["relative_change"] is not None else ""
            ag = c["agreement"]
            both = "" if ag["rate"] is None else f"; {ag['rate']:.0%} of boxes found in both"
            table.add_row("vehicles", f"raw {t['raw']['vehicles']}, dehazed {t['dehazed']['vehicles']}{rel}; "
                                      f"frames with more {c['frames_more']}, fewer {c['frames_fewer']}{both}, "
                                      f"{ag['raw_only']} only raw, {ag['dehazed_only']} only dehazed\n"
                                      "[dim]detections, not vehicles found: without labels extra boxes may be false "
                                      "(cidstream eval measures accuracy)[/]")
        else:
            table.add_row("vehicles", f"{t['dehazed']['vehicles']} detections in {report['frames']} frames")
        extra = [s for s in t if s not in ("raw", "dehazed")]
        if extra:
            from .sinks.report import ARM_LABELS

            table.add_row("other arms", ", ".join(f"{ARM_LABELS.get(s, s)} {t[s]['vehicles']}" for s in extra)
                          + (f" ([B]: {report['arms']['detector_b']})" if report["arms"].get("detector_b") else ""))
        if report.get("fog_detector"):
            fog, left_raw = report["fog_detector"], (report.get("haze") or {}).get("frames_raw", 0)
            table.add_row("fog detector", f"{fog['detector']} on the {fog['view']} view of the "
                                          f"{report['frames'] - left_raw} frames the gate dehazed; "
                                          f"{report['detector']} on the raw frame of the {left_raw} left raw")
        if report.get("unique_vehicles"):
            table.add_row("unique", ", ".join(f"{k} {v}" for k, v in report["unique_vehicles"].items()))
        if report.get("speed", {}).get("detector_share") is not None:
            both = f" and {report['fog_detector']['detector']}" if report.get("fog_detector") else ""
            table.add_row("detection", f"{report['detector']}{both}: {report['speed']['detector_share']:.0%} "
                                       "of the time")
        html = folder / "report.html"
        table.add_row("report", str(html) if html.exists() else "not written")
    console.print(table)
    if error is not None:  # last, in the one-line form of every error (README), after what was kept
        console.print(f"[bold red]error:[/] {redact_url(error)}", highlight=False, soft_wrap=True)


def print_bench(console, r) -> None:
    table = Table(title=f"cidstream bench: {redact_url(r.input)} ({r.width}x{r.height}, {r.frames} frames)")
    table.add_column("stage")
    table.add_column("fps", justify="right")
    rows = [("decode", r.decode_fps)] + ([("upload (part of model)", r.upload_fps)] if r.upload_fps else [])
    if r.gate_fps:
        rows.append(("haze measure (part of model)", r.gate_fps))
    rows.append(("model", r.model_fps))
    if r.detect_fps is not None:
        rows.append(("detect", r.detect_fps))
    if r.fog_path_fps is not None:
        rows.append((f"detect, fog path ({r.fog_view})", r.fog_path_fps))
    if r.download_fps:
        rows.append(("download", r.download_fps))
    rows += [("encode", r.encode_fps), ("end to end", r.end_to_end_fps)]
    if r.no_video_fps is not None:
        rows.append(("end to end, no video", r.no_video_fps))
    for name, fps in rows:
        mark = " (slowest)" if name == r.slowest_stage else ""
        table.add_row(name + mark, f"{fps:.1f}")
    console.print(table)
    notes = f"; {', '.join(r.notes)}" if r.notes else ""
    runtime = "" if r.runtime == "torch" else f", {r.runtime}"
    console.print(f"model {r.model} on {r.device} ({r.precision}{runtime}, batch {r.batch}), {r.machine}{notes}")
    gpu = f", GPU memory peak {r.gpu_memory_mb} MB" if r.gpu_memory_mb is not None else ""
    console.print(f"decode: {r.decode_path}; encode: {r.encode_path}{gpu}")
    if r.upload_fps is None:
        console.print("upload: none (RGB frames decoded into host memory; the model on the CPU reads them there)")
    if r.gate_fps:
        raw = (f"; the network ran on {r.network_frames} of {r.frames} frames (the gate left the others raw)"
               if r.network_frames < r.frames else "")
        console.print(f"haze measure ({r.gate_measure}): {r.gate_share:.1%} of the dehazing stage's time{raw}")
    if r.detector_share is not None:
        console.print(f"detector {r.detector} ({r.detector_runtime}): {r.detector_share:.0%} of the end-to-end time")
    if r.fog_path_cost is not None:
        console.print(f"fog path ({r.fog_detector} on {r.fog_view} frames) / base path ({r.detector} on each frame): "
                      f"[bold]{r.fog_path_cost:.2f}[/]x the time per frame; frames the gate leaves raw take the "
                      "base path")
    streams = f"; {r.streams} inputs at once (end-to-end fps summed)" if r.streams > 1 else ""
    console.print(f"end to end / slowest stage = [bold]{r.ratio:.2f}[/] (median of {r.repeats} rounds); "
                  f"end to end / stages run one after another = {r.overlap:.2f}{streams}")
    if r.no_video_ratio is not None:
        console.print(f"no video: end to end / slowest stage = [bold]{r.no_video_ratio:.2f}[/]")
    if r.ratio > 1:
        console.print("[yellow]end to end came out faster than the slowest stage timed alone: the stage timings "
                      "are noisy on this machine (other work shares its cores); rerun with more --repeats[/]")
    if r.fixed_cost_s is not None:
        console.print(f"fixed cost of a run beyond its frames (threads, encoder open and close): {r.fixed_cost_s:.2f} s")
    else:
        console.print("fixed cost of a run beyond its frames: not measurable here (the long and the short run "
                      "do not separate it from the machine's noise)")
    if getattr(r, "warp_ratio", None) is not None:
        smoothing = "temporal smoothing on" if r.temporal else "no temporal smoothing"
        console.print(f"stability of the output over the input's ({smoothing}, gate as configured): flicker "
                      f"(brightness change between frames) {r.flicker_ratio:.2f}, warping error (change along the "
                      f"motion) {r.warp_ratio:.2f}; 1 = as steady as the input")
