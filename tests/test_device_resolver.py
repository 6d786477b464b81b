"""One device resolver (engine/device.py): training's --device and the Ray engine's GPU request read device words
as select_device does. GPUs are faked (cuda_available, device_count) so every case runs on any machine."""
from __future__ import annotations

import pytest
import torch

import cidstream.engine.device as device_mod
from cidstream.config import BatchConfig
from cidstream.errors import ConfigError


@pytest.fixture
def gpus(monkeypatch):
    """Make this machine look as if it had ``n`` CUDA GPUs (0: none)."""
    def have(n: int) -> None:
        monkeypatch.setattr(device_mod, "cuda_available", lambda: n > 0)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: n)
    return have


# --- training's --device (train detector) ---------------------------------------------------------------------

def test_train_device_without_a_gpu_runs_on_the_cpu_or_says_why_not(gpus):
    from training.cli import train_device

    gpus(0)
    assert train_device("cpu") == ("cpu", "cpu")
    assert train_device("auto") == ("cpu", "cpu")
    for spec in ("cuda", "cuda:0", "0"):
        with pytest.raises(ConfigError, match=r"no CUDA GPU is available \(use --device cpu or auto\)"):
            train_device(spec)


def test_train_device_on_this_machine_follows_select_device():
    """Unfaked: auto lands where cidstream's own resolver puts it (the CPU on a machine without CUDA)."""
    from cidstream.engine.device import select_device
    from training.cli import train_device

    expected = ("cpu", "cpu") if select_device("auto").type == "cpu" else ("cuda:0", "0")
    assert train_device("auto") == expected


def test_train_device_with_gpus_gives_torch_and_ultralytics_names(gpus):
    from training.cli import train_device

    gpus(2)
    assert train_device("auto") == ("cuda:0", "0")
    assert train_device("cuda") == ("cuda:0", "0")
    assert train_device("cuda:1") == ("cuda:1", "1")
    assert train_device("1") == ("cuda:1", "1")  # Ultralytics' bare GPU index
    assert train_device("cpu") == ("cpu", "cpu")


def test_train_device_refuses_a_gpu_the_machine_does_not_have(gpus):
    """The device-count check select_device makes, which train_device used to skip."""
    from training.cli import train_device

    gpus(2)
    for spec in ("cuda:2", "2"):
        with pytest.raises(ConfigError, match=r"'cuda:2' requested but this machine has 2 CUDA GPU\(s\)"):
            train_device(spec)


@pytest.mark.parametrize("spec", ["gpu", "cuda:x", "cuda:-1", "0,1", "mps"])
def test_train_device_refuses_words_it_does_not_know(gpus, spec):
    from training.cli import train_device

    gpus(1)
    with pytest.raises(ConfigError, match="use auto, cpu, cuda") as err:
        train_device(spec)
    assert spec in str(err.value)


# --- the Ray engine's GPU request ------------------------------------------------------------------------------

class _Remote:
    """ray.remote(fn) stand-in: records the options the engine asks the task to run with."""

    def __init__(self, fn):
        self.asked = {}

    def options(self, **kw):
        self.asked.update(kw)
        return self


@pytest.fixture
def ray_cluster(monkeypatch):
    """Start a RayEngine against a fake cluster of the given resources; returns the task options it asked for."""
    ray = pytest.importorskip("ray")
    import ray.util.queue

    from cidstream.jobs.executors import RayEngine

    def start(device: str, resources: dict) -> dict:
        made = []
        monkeypatch.setattr(ray, "init", lambda **kw: None)
        monkeypatch.setattr(ray, "cluster_resources", lambda: dict(resources))
        monkeypatch.setattr(ray, "remote", lambda fn: made.append(_Remote(fn)) or made[-1])
        monkeypatch.setattr(ray.util.queue, "Queue", lambda **kw: None)
        RayEngine(BatchConfig(engine="ray", gpus_per_task=0.5), device, "out", workers=0)
        return made[0].asked

    return start


@pytest.mark.parametrize("device, resources, num_gpus", [
    ("auto", {"CPU": 8, "GPU": 2}, 0.5),   # auto takes the cluster's GPUs
    ("auto", {"CPU": 8}, 0),               # ... and runs on CPUs where it has none
    ("auto", {"CPU": 8, "GPU": 0}, 0),
    ("cpu", {"CPU": 8, "GPU": 2}, 0),      # cpu never reserves one
    ("cuda", {"CPU": 8, "GPU": 2}, 0.5),
    ("cuda:1", {"CPU": 8, "GPU": 2}, 0.5),
    ("cuda", {"CPU": 8}, 0.5),             # asked for by name: reserved (Ray tells the user it cannot place it)
])
def test_ray_engine_reserves_a_gpu_as_the_device_setting_says(gpus, ray_cluster, device, resources, num_gpus):
    """The cluster's GPU count decides auto, not this (driver) machine's: faked here to say the opposite."""
    gpus(0 if resources.get("GPU") else 1)
    assert ray_cluster(device, resources)["num_gpus"] == num_gpus
