"""A real RTSP server for tests and benchmarks (GStreamer's gst-rtsp-server).

Run it with the system Python, which has the GObject bindings (python3-gi):

    /usr/bin/python3 tests/rtsp_server.py --port 8554 --mount /cam --testsrc --size 640x360 --fps 25
    /usr/bin/python3 tests/rtsp_server.py --port 8554 --mount /cam --file clip.mp4   # H.264 in MP4, sent once

It prints "READY rtsp://127.0.0.1:PORT/MOUNT" on stdout once it listens. Debian packages:
gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-x (clockoverlay).
"""
import argparse
import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def launch_line(args) -> str:
    if args.file:
        return (f"( filesrc location={args.file} ! qtdemux ! h264parse ! "
                "rtph264pay name=pay0 pt=96 config-interval=1 )")
    w, h = args.size.split("x")
    return (f"( videotestsrc is-live=true pattern={args.pattern} ! video/x-raw,width={w},height={h},"
            f"framerate={args.fps}/1 ! clockoverlay ! x264enc tune=zerolatency speed-preset=ultrafast "
            f"key-int-max={args.fps} ! rtph264pay name=pay0 pt=96 config-interval=1 )")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--mount", default="/cam")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--file", help="MP4 with H.264 video, streamed once per client")
    src.add_argument("--testsrc", action="store_true", help="a live test pattern with a clock")
    p.add_argument("--size", default="640x360")
    p.add_argument("--fps", type=int, default=25)
    p.add_argument("--pattern", default="ball")
    args = p.parse_args()

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(launch_line(args))
    factory.set_shared(True)  # one encoder for every client, like a camera
    server.get_mount_points().add_factory(args.mount, factory)
    if server.attach(None) == 0:
        print(f"cannot listen on 127.0.0.1:{args.port}", file=sys.stderr)
        return 1
    loop = GLib.MainLoop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, sig, loop.quit)
    print(f"READY rtsp://127.0.0.1:{args.port}{args.mount}", flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
