"""The one small interface every framework implements.

A backend is one module `backends/<name>.py` (installed as `lmbench.backends.<name>`)
that declares, at module level,

    LAYOUTS = ("native-layout", "other-layout", ...)   # first one is the default
    COMPUTES_PADDING = {"native-layout": {"cpu": False, "cuda": False}, ...}  # see below
    COMPILE_SCOPE = "whole step"                        # optional: what --compile compiles
    LAYOUT_ENV = {"other-layout": {"VAR": "value"}}     # optional: set before the import
    THREAD_ENV = {"VAR": "{threads}", "LOG_VAR": "2"}   # optional: set before the import
    DATA_PARALLEL = {"launcher": [...], "engine": "..."}  # optional: see lmbench.run.launch
    BLOCKED_IMPORTS = ("unused_module",)                # optional: see load_backend
    DECLINED_VARIANTS = [({"precision": "fp16", "device": "cpu"}, "why")]  # optional: see declined
    class Backend(lmbench.backend.Backend): ...

COMPUTES_PADDING says, per layout and device, whether the LSTM runs over a batch's padded
positions (a padded position then costs what a real one does) or over its real tokens only;
the harness records it with every run (environment["lstm_computes_padding"]) and counts the
work the LSTM did from it. A backend whose answer depends on more (a variant) overrides
Backend.lstm_computes_padding.

and may import its framework at the top: the harness imports a backend module only
inside the child process that runs it (see `lmbench.run.worker`), after the thread
environment is set. The parent reads LAYOUTS from the source without importing it.

Conventions every backend follows (see lmbench.config for why):
- the model is Embedding(V, H) -> `layers` x LSTM(H) -> Linear(H, V), with dropout
  (when cfg.dropout > 0, training only) on the embedding output, between LSTM layers
  and on the last LSTM output -- Zaremba et al.'s non-recurrent connections;
- the training objective is the NLL summed over a batch's real target tokens divided
  by the number of sequences B; SGD with the global gradient norm clipped to cfg.clip;
- weights in and out are the canonical layout of lmbench.weights;
- `batch.carry_state` (stream mode) means: start from the final state of the previous
  batch (detached from its graph) when one of the same batch size is held, else zeros;
  keep the new final state. Otherwise start from zeros and keep nothing. The base class
  implements the rule once (`carried_state`, `keep_state`) for a state held as a tuple
  whose tensors are shaped [layers, B, H];
- float32 means true float32: no TF32 on GPUs (each backend turns it off explicitly) and
  `environment()["precision"]` says what the matmuls and the LSTM ran in.
"""
from __future__ import annotations

from .errors import UserError

import abc
import ast
import functools
import importlib
import importlib.util
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from .config import Config
from .data.corpus import Batch


class BackendUnavailable(UserError, RuntimeError):
    """The framework or the device is not available here; the message says how to fix it."""


class VariantSkipped(RuntimeError):
    """A run variant (--compile, --precision) that is not applicable or has no effect in this
    framework/layout/device. Raised by a backend's __init__ with the reason (naming the
    framework and why); the run is then recorded as status "skipped", never as a number."""


PRECISIONS = ("fp32", "bf16", "fp16")  # fp32 = true float32 everywhere (the default)


class StepTimer:
    """Per-step wall-clock times; right for frameworks that run synchronously on the CPU.

    GPU backends return a timer built on device events instead, so that timing a step
    does not add a host-device sync a hand-written loop would not have.
    """

    source = "host wall clock"

    def __init__(self):
        self._starts: list[float] = []
        self._stops: list[float] = []

    def start(self) -> None:
        self._starts.append(time.perf_counter())

    def stop(self) -> None:
        self._stops.append(time.perf_counter())

    def samples_ms(self) -> list[float]:
        """Resolve after the timed region (the harness has synced the device)."""
        return [(b - a) * 1e3 for a, b in zip(self._starts, self._stops)]


class EventTimer(StepTimer):
    """Per-step device times from events recorded on the device's stream (CUDA events in
    torch and Paddle 3 share this API: record(), a.elapsed_time(b) in ms). Recording an
    event does not block the host, so timing adds no sync a hand-written loop would not have."""
    source = "device events"

    def __init__(self, new_event):
        super().__init__()
        self._new_event = new_event

    def _record(self, into: list) -> None:
        event = self._new_event()
        event.record()
        into.append(event)

    def start(self) -> None:
        self._record(self._starts)

    def stop(self) -> None:
        self._record(self._stops)

    def samples_ms(self) -> list[float]:
        return [a.elapsed_time(b) for a, b in zip(self._starts, self._stops)]


class Backend(abc.ABC):
    name: str = ""
    state: Any = None  # the carried (h, c, ...) of stream mode, tensors shaped [layers, B, H]

    def __init__(self, cfg: Config, layout: str, device: str, threads: int, workers: int = 1,
                 compile: bool = False, precision: str = "fp32"):
        """Build the model on `device` ('cpu' or 'cuda'); raise BackendUnavailable when
        'cuda' is asked for and this framework build or machine has no GPU.

        The run settings after `threads` (subclasses pass them on as **options):
        workers   -- data-parallel worker processes of this run (see `join`), 1 = none;
        compile   -- run the step through the framework's compiler;
        precision -- "fp32" (true float32), "bf16" or "fp16"."""
        layouts = self._declared("LAYOUTS", ())
        if layout not in layouts:
            raise ValueError(f"{self.name}: invalid layout={layout!r}: allowed: {', '.join(layouts)}")
        if precision not in PRECISIONS:
            raise ValueError(f"{self.name}: invalid precision={precision!r}: allowed: {', '.join(PRECISIONS)}")
        if not isinstance(compile, bool):
            raise ValueError(f"{self.name}: invalid compile={compile!r}: must be true or false")
        reason = declined_variant(self._declared("DECLINED_VARIANTS", ()), layout=layout, device=device,
                                  compile=compile, precision=precision)
        if reason:
            raise VariantSkipped(reason)
        self.cfg, self.layout, self.device, self.threads = cfg, layout, device, threads
        self.workers, self.compile, self.precision = workers, compile, precision
        self.state = None

    @classmethod
    def _declared(cls, constant: str, default):
        """A module-level declaration of the backend module this class (or the class it
        extends) comes from."""
        modules = (sys.modules.get(c.__module__) for c in cls.__mro__)
        return next((getattr(m, constant) for m in modules if hasattr(m, constant)), default)

    # -- the carried-state rule of stream mode, once for every backend ------------------
    def carried_state(self, batch: Batch):
        """The state `batch` starts from: the one kept from the previous batch when the batch
        carries state and the sizes match, else None (zeros)."""
        held = self.state
        if batch.carry_state and held is not None and held[0].shape[1] == batch.batch_size:
            return held
        return None

    def keep_state(self, batch: Batch, final_state, detach=lambda t: t) -> None:
        """Keep `final_state` (each tensor detached from its graph) for the next batch when
        `batch` carries state; otherwise keep nothing."""
        self.state = tuple(detach(t) for t in final_state) if batch.carry_state else None

    def reset_state(self) -> None:
        """Forget any carried hidden state (start of an epoch or an evaluation pass)."""
        self.state = None

    @classmethod
    @abc.abstractmethod
    def cuda_available(cls) -> bool: ...

    # -- data parallelism (backends whose module declares DATA_PARALLEL) ----------------
    @classmethod
    def join(cls, workers: int, device: str) -> int:
        """Join the data-parallel job of `workers` processes and return this one's rank.
        Called in every worker before the Backend is built (and before any other framework
        op). The backend built next gets `workers` and trains on its shard of each global
        batch (lmbench.data.corpus.shard): its objective must make the engine's reduced gradient
        that of the global batch's summed NLL / batch.loss_sequences -- so an engine that
        averages over workers (DDP, paddle.DataParallel) differentiates the local summed NLL
        x workers / loss_sequences, one that sums differentiates it / loss_sequences -- and
        it clips by the norm of the reduced gradient."""
        raise BackendUnavailable(f"{cls.name} has no data-parallel support: run it with --workers 1")

    def lstm_computes_padding(self) -> bool | None:
        """Whether the LSTM runs over padded positions in this layout on this device: the
        backend module's COMPUTES_PADDING[layout][device]; None where it declares none."""
        modules = (sys.modules.get(c.__module__) for c in type(self).__mro__)
        table = next((m.COMPUTES_PADDING for m in modules if hasattr(m, "COMPUTES_PADDING")), {})
        return table.get(self.layout, {}).get(self.device)

    def skip_gradient_sync(self):
        """A context manager under which train_step does the same work without the gradient
        all-reduce (for an A/B estimate of its share of the step); None if unsupported."""
        return None

    def leave(self) -> None:
        """Every worker calls this after its last training step; then rank 0 alone
        evaluates (eval_step and get_weights must use no collectives)."""

    @abc.abstractmethod
    def set_weights(self, weights: dict[str, np.ndarray]) -> None: ...

    @abc.abstractmethod
    def get_weights(self) -> dict[str, np.ndarray]: ...

    @abc.abstractmethod
    def train_step(self, batch: Batch, lr: float) -> Any:
        """One SGD step; returns a handle to the summed NLL over the batch's real targets.

        The handle may live on the device: the harness turns handles into floats with
        `to_floats` only at points where a hand-written loop would read its loss.
        """

    @abc.abstractmethod
    def eval_step(self, batch: Batch) -> Any:
        """Summed NLL handle over the batch's real targets; no dropout, no update."""

    @abc.abstractmethod
    def loss_and_grads(self, batch: Batch) -> tuple[float, dict[str, np.ndarray]]:
        """The training objective (summed NLL / B, no dropout) and its unclipped gradients
        in the canonical layout, without updating weights or the carried state."""

    def to_floats(self, handles: list[Any]) -> list[float]:
        return [float(np.asarray(h)) for h in handles]

    def sync(self) -> None:
        """Block until all queued device work is done (no-op on a synchronous CPU)."""

    def device_event(self):
        """A new timing event on the device's stream (GPU backends), or None: then per-step
        times are the host's wall clock, right for a synchronous CPU."""
        return None

    def step_timer(self) -> StepTimer:
        return EventTimer(self.device_event) if self.device_event() is not None else StepTimer()

    def peak_memory_bytes(self) -> int | None:
        """Peak device memory on GPU; None on CPU (the harness reports process RSS)."""
        return None

    def compile_report(self) -> dict | None:
        """What the compiler did, known only after steps ran (the worker stores it as
        metrics["compile"]): e.g. {"compiler": ..., "graphs": 3, "graph_breaks": 1,
        "recompiles": 0, "lstm": "eager (graph break)"}. None when nothing was compiled."""
        return None

    @abc.abstractmethod
    def environment(self) -> dict:
        """framework, framework_version, device_name, cuda_version, cudnn_version (or None),
        plus anything worth knowing about the kernels in use (e.g. 'lstm_kernel')."""


def _backends_dir() -> Path:
    from . import backends  # the package only: it imports no framework

    return Path(next(iter(backends.__path__)))


def available_backends() -> list[str]:
    """Backend names, from the modules present (no framework is imported)."""
    return sorted(p.stem for p in _backends_dir().glob("*.py") if not p.stem.startswith("_"))


# CPython 3.11's AST constructor keeps its recursion bookkeeping in interpreter-wide state:
# two threads parsing at once (tests start probes from a thread pool) can fail with
# "SystemError: AST constructor recursion depth mismatch". Parse under one lock, once per file.
_PARSE_LOCK = threading.Lock()


@functools.lru_cache(maxsize=None)
def _module_constants(path: Path, mtime_ns: int) -> dict:
    """Every literal module-level NAME = value of a source file (cached per file version)."""
    with _PARSE_LOCK:
        tree = ast.parse(path.read_text())
    constants = {}
    for node in tree.body:
        for target in node.targets if isinstance(node, ast.Assign) else ():
            if isinstance(target, ast.Name) and target.id.isupper():
                try:
                    constants[target.id] = ast.literal_eval(node.value)
                except (ValueError, TypeError, SyntaxError):  # not a literal (e.g. a call): not a declaration we read
                    pass
    return constants


def _module_constant(name: str, constant: str, default=None):
    """A literal module-level constant of a backend, read from its source (no import)."""
    path = _backend_file(name)
    if not path.is_file():
        from .errors import did_you_mean

        raise BackendUnavailable(f"unknown backend {name!r}{did_you_mean(name, available_backends())}: available: "
                                 f"{', '.join(available_backends())}")
    constants = _module_constants(path, path.stat().st_mtime_ns)
    if constant in constants:
        return constants[constant]
    if default is None:
        raise BackendUnavailable(f"{path} declares no {constant}")
    return default


def backend_layouts(name: str) -> tuple[str, ...]:
    """A backend's LAYOUTS, read from its source so the parent never imports a framework."""
    return tuple(_module_constant(name, "LAYOUTS"))


def native_layout(name: str) -> str:
    """A backend's native layout: the first of its LAYOUTS (what "native" means everywhere)."""
    return backend_layouts(name)[0]


def layout_env(name: str, layout: str) -> dict[str, str]:
    """Environment variables a layout needs set before its framework is imported."""
    return dict(_module_constant(name, "LAYOUT_ENV", {}).get(layout, {}))


def _declared_env(name: str, constant: str, **fields) -> dict[str, str]:
    """A backend's environment declaration `constant` ({} where it declares none), its
    "{field}"s filled in."""
    return {var: str(value).format(**fields) for var, value in _module_constant(name, constant, {}).items()}


def thread_env(name: str, threads: int) -> dict[str, str]:
    """A backend's THREAD_ENV (variables its framework reads at import), "{threads}" filled in."""
    return _declared_env(name, "THREAD_ENV", threads=threads)


def compile_cache_env(name: str, directory) -> dict[str, str]:
    """A backend's COMPILE_CACHE_ENV (the variables that make its framework keep compiled
    programs in `directory` across processes), "{dir}" filled in; {} where it declares none."""
    return _declared_env(name, "COMPILE_CACHE_ENV", dir=directory)


def computes_padding(name: str, layout: str, device: str) -> bool | None:
    """A backend's declared COMPUTES_PADDING[layout][device] (read from source), or None."""
    return _module_constant(name, "COMPUTES_PADDING", {}).get(layout, {}).get(device)


VARIANT_SETTINGS = ("layout", "device", "compile", "precision")  # what a DECLINED_VARIANTS entry may name


def declined_variant(declared, **settings) -> str | None:
    """The reason of the first entry of `declared` that `settings` (layout, device: "cpu" or
    "cuda", compile, precision) meet, else None. An entry is ({setting: value or tuple of
    values}, reason); the reason may name {layout}, {device}, {precision}."""
    for when, reason in declared:
        unknown = sorted(set(when) - set(VARIANT_SETTINGS))
        if unknown:
            raise ValueError(f"DECLINED_VARIANTS names {', '.join(unknown)}: an entry may name "
                             f"{', '.join(VARIANT_SETTINGS)}")
        if all(settings[k] in (v if isinstance(v, (tuple, list)) else (v,)) for k, v in when.items()):
            return reason.format(**settings)
    return None


def declined(name: str, layout: str, device: str, compile: bool = False, precision: str = "fp32") -> str | None:
    """Why backend `name` declines a variant on `device` ("cpu" or "cuda"), from its
    DECLINED_VARIANTS read from source, or None. These are the refusals no machine changes:
    the harness makes them before importing the framework (a backend may still decline in
    its __init__ for what only the framework can tell, e.g. the CPU's bfloat16 support)."""
    return declined_variant(_module_constant(name, "DECLINED_VARIANTS", ()), layout=layout, device=device,
                            compile=compile, precision=precision)


def compile_scope(name: str) -> str | None:
    """What a backend's --compile hands to its compiler ("embedding+head", "whole step"): its
    COMPILE_SCOPE, read from source; None where it declares none (or the backend is unknown
    here, as an old record's may be)."""
    try:
        return _module_constant(name, "COMPILE_SCOPE", "") or None
    except BackendUnavailable:
        return None


def data_parallel(name: str) -> dict | None:
    """A backend's DATA_PARALLEL declaration ({"launcher": [...] or None, "engine": ...}), or
    None when it has no data-parallel support."""
    return _module_constant(name, "DATA_PARALLEL", {}) or None


def _backend_file(name: str) -> Path:
    """A backend's source: `backends/<name>.py`, or `name` itself when it is a path to a .py
    file -- how the tests hand `lmbench verify` a deliberately broken copy of a backend."""
    return Path(name) if name.endswith(".py") else _backends_dir() / f"{name}.py"


def load_backend(name: str) -> type[Backend]:
    """Import a backend module (and so its framework). Call only in the run's own process.

    The modules its BLOCKED_IMPORTS names are made unimportable first (an ImportError for
    whoever tries): optional imports its framework makes and never uses (another framework,
    a plotting library), which would cost the process import time and, on the CPU, count in
    its peak memory (max RSS)."""
    backend_layouts(name)  # unknown names get the friendly error
    for module in _module_constant(name, "BLOCKED_IMPORTS", ()):
        sys.modules.setdefault(module, None)  # None in sys.modules: `import module` raises ImportError
    try:
        if name.endswith(".py"):
            spec = importlib.util.spec_from_file_location(Path(name).stem, name)
            module = importlib.util.module_from_spec(spec)
            sys.modules[spec.name] = module  # the base class finds LAYOUTS through sys.modules
            spec.loader.exec_module(module)
        else:
            module = importlib.import_module(f"lmbench.backends.{name}")
    except ImportError as e:
        raise BackendUnavailable(
            f"backend {name!r} cannot be imported ({e}); install its framework with "
            f"`pip install -c constraints-cpu.txt '.[{name}]'` (or `make install`)") from e
    return module.Backend
