"""Which FFmpeg option names exist, asked of the FFmpeg that PyAV loaded: the config refuses a misspelt
``input.options`` name up front (FFmpeg would ignore it without a word). Its own module, below io, since
the config system checks it."""
from __future__ import annotations

import ctypes

import av  # noqa: F401  (loads FFmpeg's libraries, which the functions below find in this process)

_AV_OPT_SEARCH = 1 | 2  # AV_OPT_SEARCH_CHILDREN | AV_OPT_SEARCH_FAKE_OBJ: every format's, protocol's, codec's


def _loaded_ffmpeg_lib(name: str):
    """The FFmpeg library ``name`` (avformat, ...) that PyAV has loaded, or None (not Linux, not found)."""
    try:
        with open("/proc/self/maps", encoding="utf-8") as fh:
            paths = sorted({line.split()[-1] for line in fh
                            if line.rstrip().rsplit("/", 1)[-1].startswith(f"lib{name}")})
    except OSError:
        return None
    return ctypes.CDLL(paths[0]) if paths else None


def unknown_ffmpeg_options(options: dict) -> list[str] | None:
    """Names of ``options`` that no demuxer, protocol or decoder of PyAV's FFmpeg has (None: cannot tell).

    FFmpeg leaves options it does not use in the dictionary it was given, and PyAV drops that
    dictionary, so a misspelt or retired name (stimeout) would be ignored without a word. This asks
    FFmpeg's option tables instead, as its own command line does (av_opt_find on the format and codec
    classes and all their children)."""
    libs = [_loaded_ffmpeg_lib(n) for n in ("avutil", "avformat", "avcodec")]
    if not all(libs):
        return None
    util, fmt, codec = libs
    util.av_opt_find.restype = ctypes.c_void_p
    util.av_opt_find.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int, ctypes.c_int]
    fmt.avformat_get_class.restype = codec.avcodec_get_class.restype = ctypes.c_void_p
    classes = [ctypes.c_void_p(fmt.avformat_get_class()), ctypes.c_void_p(codec.avcodec_get_class())]
    return [name for name in map(str, options)
            if not any(util.av_opt_find(ctypes.byref(c), name.encode(), None, 0, _AV_OPT_SEARCH) for c in classes)]
