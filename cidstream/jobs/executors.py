"""Where per-file tasks run: worker processes or threads on this machine, or tasks on a Ray cluster.

Every engine gives the driver the same thing: ``submit(job) -> concurrent.futures.Future`` of the
worker's result dict, a progress queue to drain, and a way to ask running tasks to stop."""
from __future__ import annotations

import multiprocessing
import os
import queue
import threading
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from ..errors import ConfigError
from .jobs import Job
from .worker import FileWorker, WorkerControl, init_process, run_in_process, run_in_ray_task


class WorkerDied(Exception):
    """The process running a task vanished (killed, out of memory, crashed in native code)."""


class Engine:
    label = "engine"
    slots = 1  # tasks in flight at once

    def submit(self, job: Job) -> Future:
        raise NotImplementedError

    def died(self, exc: BaseException) -> bool:
        """Whether a task's exception means its worker process died (the task may be retried)."""
        return isinstance(exc, WorkerDied)

    def recover(self) -> None:
        """Get ready for new tasks after a worker died."""

    def drain_progress(self) -> list[tuple]:
        items = []
        q = self.progress
        while q is not None:
            try:
                items.append(q.get_nowait())
            except queue.Empty:
                break
            except (OSError, ValueError, EOFError):  # the queue is gone (shutting down)
                break
        return items

    def request_stop(self) -> None:
        pass

    def close(self) -> None:
        pass


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _wants_cuda(device: str, gpus: float | None = None) -> bool:
    """Whether ``device`` runs on a GPU here, or (``gpus``: a Ray cluster's count) there: engine/device.py decides."""
    from ..engine.device import means_cuda

    return means_cuda(device, gpus)


class ProcessEngine(Engine):
    """N spawned worker processes, each with its own model and 1/N of the CPU threads."""

    def __init__(self, workers: int, out_dir: str):
        self.slots, self.out_dir = workers, out_dir
        self.label = f"local, {workers} worker process{'es' if workers > 1 else ''}"
        self._ctx = multiprocessing.get_context("spawn")
        self.progress = self._ctx.Queue()
        self.stop = self._ctx.Event()
        self._pool = None
        self.recover()

    def recover(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        threads = max(1, cpu_count() // self.slots)
        self._pool = ProcessPoolExecutor(self.slots, mp_context=self._ctx, initializer=init_process,
                                         initargs=(threads, self.progress, self.stop, os.getpid()))

    def submit(self, job: Job) -> Future:
        return self._pool.submit(run_in_process, job, self.out_dir)

    def died(self, exc: BaseException) -> bool:
        return isinstance(exc, BrokenProcessPool)

    def request_stop(self) -> None:
        self.stop.set()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        self.progress.close()


class ThreadEngine(Engine):
    """N threads in this process sharing one model (one GPU): decoding, encoding and checksums of
    different files overlap while the model calls take turns."""

    def __init__(self, workers: int, out_dir: str):
        self.slots, self.out_dir = workers, out_dir
        self.label = f"local, {workers} thread{'s' if workers > 1 else ''} sharing one model"
        self.progress = queue.Queue()
        self.stop = threading.Event()
        self._worker = FileWorker()
        self._control = WorkerControl(progress=self.progress, stop=self.stop, model_lock=threading.Lock())
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="batch-worker")

    def submit(self, job: Job) -> Future:
        return self._pool.submit(self._worker.run, job, self.out_dir, self._control)

    def request_stop(self) -> None:
        self.stop.set()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


class RayEngine(Engine):
    """The same per-file task as a Ray task; Ray places it by the CPUs/GPUs it asks for."""

    def __init__(self, batch_cfg, device: str, out_dir: str, workers: int):
        try:
            import ray
            from ray.util.queue import Queue
        except ImportError:
            raise ConfigError("the ray engine needs Ray: pip install 'cidstream[ray]' (or pip install ray)") from None
        self.ray, self.out_dir = ray, out_dir
        address = batch_cfg.address or None
        init_kw = {"include_dashboard": False, "log_to_driver": False, "configure_logging": True,
                   "logging_level": "ERROR"}
        if address is None:  # a private instance on this machine, sized by --workers
            init_kw["num_cpus"] = max(1, workers or cpu_count())
        try:
            ray.init(address=address, **init_kw)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise ConfigError(f"cannot start or reach Ray at {address or 'this machine'}: "
                              f"{str(exc).splitlines()[0]}") from None
        resources = ray.cluster_resources()
        gpus = batch_cfg.gpus_per_task if _wants_cuda(device, resources.get("GPU", 0)) else 0
        cpus = batch_cfg.cpus_per_task
        capacity = int(resources.get("CPU", 1) // cpus)
        if gpus:
            capacity = min(capacity, int(resources.get("GPU", 0) // gpus))
        self.slots = workers or max(1, capacity)
        self.threads = max(1, int(cpus))
        self.progress = Queue(actor_options={"num_cpus": 0})
        self._task = ray.remote(run_in_ray_task).options(num_cpus=cpus, num_gpus=gpus, max_retries=0)
        self._refs: dict = {}
        where = f"cluster {address}" if address else "local Ray instance"
        self.label = (f"ray ({where}, {resources.get('CPU', 0):g} CPUs, {resources.get('GPU', 0):g} GPUs; "
                      f"{cpus:g} CPU{f' + {gpus:g} GPU' if gpus else ''} per file, {self.slots} at once)")

    def submit(self, job: Job) -> Future:
        ref = self._task.remote(job, self.out_dir, self.threads, self.progress)
        fut = ref.future()
        self._refs[fut] = ref
        fut.add_done_callback(lambda f: self._refs.pop(f, None))
        return fut

    def died(self, exc: BaseException) -> bool:
        from ray.exceptions import NodeDiedError, WorkerCrashedError

        return isinstance(exc, (WorkerCrashedError, NodeDiedError))

    def request_stop(self) -> None:
        for ref in list(self._refs.values()):
            self.ray.cancel(ref)  # raises KeyboardInterrupt in the task: it finalizes and returns "interrupted"

    def close(self) -> None:
        self.ray.shutdown()


def make_engine(batch_cfg, device: str, out_dir: str) -> Engine:
    if batch_cfg.engine == "ray":
        return RayEngine(batch_cfg, device, out_dir, batch_cfg.workers)
    mode = batch_cfg.local_workers
    if mode == "auto":
        mode = "threads" if _wants_cuda(device) else "processes"
    if mode == "threads":
        return ThreadEngine(batch_cfg.workers, out_dir)
    return ProcessEngine(batch_cfg.workers, out_dir)
