# One word per job. Each target creates the virtual environment (pinned by constraints.txt) first.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: install system-deps demo test test-fast bench sample clean

# The RTSP tests start a real GStreamer RTSP server with the system Python (python3-gi).
RTSP_APT := gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-good gstreamer1.0-plugins-bad \
	gstreamer1.0-plugins-ugly gstreamer1.0-x python3-gi
GST_PROBE := import gi; gi.require_version('GstRtspServer', '1.0'); from gi.repository import Gst, GstRtspServer; \
	Gst.init(None); assert all(Gst.ElementFactory.find(e) for e in ('x264enc', 'rtph264pay', 'clockoverlay'))

$(STAMP): pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

# The main job on the built-in sample: writes out/hazy_traffic_dehazed.mp4.
demo: install
	$(VENV)/bin/cidstream run samples/hazy_traffic.mp4 -o out/hazy_traffic_dehazed.mp4

# Installs the apt packages above when they are missing (as root, or with sudo).
system-deps:
	@if /usr/bin/python3 -c "$(GST_PROBE)" >/dev/null 2>&1; then echo "GStreamer RTSP server: present"; else \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y --no-install-recommends $(RTSP_APT); \
	fi

test: install system-deps
	$(PY) -m pytest -q

# The quick subset to run while editing (about a minute): no test marked slow (end-to-end runs, servers, training).
test-fast: install
	$(PY) -m pytest -q -m "not slow"

# Stage speeds on the sample for every model (see docs/benchmarking.md for the full set).
bench: install
	$(PY) benchmarks/run_benchmarks.py --out benchmarks/results

sample: install
	$(PY) samples/make_sample.py

clean:
	rm -rf $(VENV) out .pytest_cache
