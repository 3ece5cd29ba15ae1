"""One run's settings, typed: the single definition of what a run is and what makes two
runs the same measurement.

`RunSpec` owns every run setting (beside `Config`, the model and its training recipe):
each field with its default, its allowed values and its help text, validation whose
errors name the field, the resolution of "native" to the backend's first layout, the
variant label, and `identity()`: the settings that change the work or the speed. The
`run` command's options and the fields a suite file may set are generated from the
fields here (`add_run_args`, `SUITE_FIELDS`); the worker receives `RunSpec.from_dict`;
`bench`, `compare`, `history`, `calibrate` and the report group runs by
`record_identity(record)`, which adds where a run ran (machine, framework version, A/B
side) to the settings' identity. A median is never taken over two identities.

Old records lack fields added later: `from_record` gives them the default they ran with,
so that a record without `precision` and one with `precision: "fp32"` are one identity.
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import InitVar, dataclass, field

from .config import FIELDS as CONFIG_FIELDS
from .config import Config, ConfigError, make_config

NATIVE = "native"  # the backend's first LAYOUTS entry
DEVICES = ("auto", "cpu", "cuda")
EVALS = ("valid", "test", "both", "none")
SCALINGS = ("strong", "weak")
PRECISIONS = ("fp32", "bf16", "fp16")  # fp32 = true float32 everywhere (the default)
DEFAULT_STEPS = 200  # timed steps of a run given neither steps nor epochs
EAGER = "eager fp32"  # the variant label of a run with neither --compile nor reduced precision


def variant_label(compile: bool, precision: str, scope: str | None = None) -> str:
    """ "eager fp32" (the default), "compile", "bf16", "compile bf16", ...; with the compile
    scope a backend declares (lmbench.backend.compile_scope), "compile: embedding+head",
    "compile: whole step, bf16": what was compiled differs by framework, and a reader must
    not take one for the other."""
    if compile and scope:
        return ", ".join([f"compile: {scope}"] + [precision] * (precision != "fp32"))
    return " ".join(["compile"] * bool(compile) + [precision] * (precision != "fp32")) or EAGER


def _setting(default, help: str, *, choices=None, kind="int", cli=True, suite=True, recorded=True,
             identity=False):
    """A RunSpec field: `kind` the value's type for the command line and validation
    ("int" > 0, "count" >= 0, "number" > 0, "bool", "str"); `identity` whether it changes
    the work or the speed (so two runs differing in it are not repeats of one cell);
    `recorded` whether the record's "run" table keeps it."""
    return field(default=default, metadata=dict(help=help, choices=choices, kind=kind, cli=cli, suite=suite,
                                                 recorded=recorded, identity=identity))


@dataclass(frozen=True)
class RunSpec:
    backend: str = _setting(None, "the framework's backend module (lmbench/backends)", kind="str", cli=False,
                            suite=False, recorded=False, identity=True)
    config: Config = _setting(None, "preset and overrides", kind="config", cli=False, suite=False,
                              recorded=False, identity=True)
    layout: str = _setting(NATIVE, "how variable length is handled; 'native' = the backend's first layout",
                           kind="str", cli=False, recorded=False, identity=True)
    device: str = _setting("auto", "auto | cpu | cuda", choices=DEVICES, kind="str", suite=False,
                           identity=True)
    threads: int | None = _setting(None, "CPU threads in all (default: every core); N workers get "
                                         "threads/N each", identity=True)
    steps: int | None = _setting(None, f"timed training steps (default {DEFAULT_STEPS})", identity=True)
    epochs: int | None = _setting(None, "train full epochs with the lr schedule", identity=True)
    warmup: int = _setting(10, "untimed warm-up steps", kind="count")
    eval: str = _setting("valid", "valid | test | both | none", choices=EVALS, kind="str")
    eval_batches: int | None = _setting(None, "evaluate only the first N batches of the split")
    epoch_batches: int | None = _setting(None, "with --epochs: train only the first N batches of every "
                                               "epoch", identity=True)
    workers: int = _setting(1, "data-parallel worker processes on the framework's own engine, each with "
                               "threads/N threads (default 1: no data parallelism)", identity=True)
    scaling: str = _setting("strong", "with --workers: strong (the preset's batch split over the workers) | "
                                      "weak (each worker gets a whole batch)", choices=SCALINGS, kind="str",
                            identity=True)
    nodes: int = _setting(1, "with --workers: machines in the job; run the same command on each, with its "
                             "--node-rank and machine 0's --rendezvous HOST:PORT", suite=False, identity=True)
    node_rank: int = _setting(0, "this machine's place in the job, 0..nodes-1", kind="count", suite=False)
    rendezvous: str | None = _setting(None, "HOST:PORT of machine 0, where the workers meet", kind="str",
                                      suite=False)
    compile: bool = _setting(False, "run the step through the framework's own compiler", kind="bool",
                             identity=True)
    precision: str = _setting("fp32", "fp32 (true float32, default) or mixed precision in bf16/fp16; a "
                                      "variant a framework cannot apply is recorded as skipped with the reason",
                              choices=PRECISIONS, kind="str", identity=True)
    target_ppl: float | None = _setting(None, "time-to-quality target (validation perplexity)", kind="number",
                                        recorded=False)
    data_dir: str | None = _setting(None, "PTB cache directory", kind="str", cli=False, suite=False,
                                    recorded=False)
    checkpoint: str | None = _setting(None, "with --epochs: checkpoint file written after every epoch",
                                      kind="str", suite=False, recorded=False)
    resume: bool = _setting(False, "continue from --checkpoint if it exists", kind="bool", suite=False,
                            recorded=False)
    oversubscribe: bool = _setting(False, "allow --threads above the machine's CPU count (the record carries "
                                          "a warning)", kind="bool", suite=False, recorded=False)
    warnings: tuple = _setting((), "what the record should say about this run", kind="tuple", cli=False,
                               suite=False, recorded=False)
    # False for a record's settings: the run happened, so what it ran with is not checked
    # against the backends present here (a record may come from another lmbench's backend)
    known_backend: InitVar[bool] = True

    def __post_init__(self, known_backend: bool):
        from .backend import BackendUnavailable, available_backends, backend_layouts, native_layout

        def bad(name, allowed):
            raise ConfigError(f"invalid {name}={getattr(self, name)!r}: {allowed}")

        set_ = object.__setattr__
        if not isinstance(self.config, Config):
            raise ConfigError(f"invalid config={self.config!r}: give a lmbench.config.Config")
        if not isinstance(self.backend, str) or not self.backend:
            bad("backend", f"available: {', '.join(available_backends())}")
        if known_backend:
            try:
                layouts = backend_layouts(self.backend)
            except BackendUnavailable as e:
                raise ConfigError(str(e)) from None
            set_(self, "layout", native_layout(self.backend) if self.layout in (None, NATIVE) else self.layout)
            if self.layout not in layouts:
                from .errors import did_you_mean

                raise ConfigError(f"invalid layout={self.layout!r} for backend {self.backend!r}"
                                  f"{did_you_mean(self.layout, (NATIVE, *layouts))}: allowed: {NATIVE}, "
                                  f"{', '.join(layouts)}")
        elif not isinstance(self.layout, str) or self.layout == NATIVE:
            bad("layout", "a record names the layout it ran")
        for f in dataclasses.fields(self):
            value, meta = getattr(self, f.name), f.metadata
            if meta["kind"] in ("int", "count") and value is not None:
                low = 1 if meta["kind"] == "int" else 0
                if not isinstance(value, int) or isinstance(value, bool) or value < low:
                    bad(f.name, "must be a positive integer" if low else "must be an integer >= 0")
            elif meta["kind"] == "number" and value is not None:
                if (not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value)
                        or value <= 0):
                    bad(f.name, "must be a positive number")
            elif meta["kind"] == "bool" and not isinstance(value, bool):
                bad(f.name, "must be true or false")
            if meta["choices"] and value not in meta["choices"]:
                bad(f.name, f"allowed: {', '.join(meta['choices'])}")
        if self.steps and self.epochs:
            raise ConfigError("give steps or epochs, not both")
        if not self.epochs:
            set_(self, "steps", self.steps or DEFAULT_STEPS)
        if (self.checkpoint or self.resume or self.epoch_batches) and not self.epochs:
            raise ConfigError("checkpoint, resume and epoch_batches go with epochs (--epochs N)")
        if self.resume and not self.checkpoint:
            raise ConfigError("resume needs a checkpoint file (--checkpoint FILE)")
        if self.epoch_batches and self.warmup >= self.epoch_batches:
            raise ConfigError(f"invalid warmup={self.warmup} with epoch_batches={self.epoch_batches}: the "
                              f"warm-up would leave no timed step in the first epoch; use a warm-up below "
                              f"{self.epoch_batches} (--warmup) or more batches per epoch (--epoch-batches)")
        if (self.workers > 1 or self.nodes > 1) and known_backend:
            self._check_data_parallel()
        set_(self, "warnings", tuple(self.warnings))
        set_(self, "checkpoint", str(self.checkpoint) if self.checkpoint else None)
        set_(self, "data_dir", str(self.data_dir) if self.data_dir else None)

    def _check_data_parallel(self) -> None:
        from .backend import data_parallel

        declared = data_parallel(self.backend)
        if self.nodes > 1:
            if not (declared or {}).get("launcher_nodes"):
                raise ConfigError(f"invalid nodes={self.nodes}: backend {self.backend!r} declares no launcher "
                                  f"for several machines (DATA_PARALLEL['launcher_nodes']); use --nodes 1")
            if not 0 <= self.node_rank < self.nodes:
                raise ConfigError(f"invalid node_rank={self.node_rank!r}: must be 0..{self.nodes - 1} (this "
                                  f"machine's place)")
            host, _, port = (self.rendezvous or "").rpartition(":")
            if not host or not port.isdigit():
                raise ConfigError(f"invalid rendezvous={self.rendezvous!r}: give machine 0's HOST:PORT "
                                  f"(--rendezvous), the same on every machine")
        if declared is None:
            raise ConfigError(f"invalid workers={self.workers}: backend {self.backend!r} has no data-parallel "
                              f"support (its module declares no DATA_PARALLEL); use --workers 1")
        if self.epochs:
            raise ConfigError(f"workers={self.workers} goes with a timed run of --steps: data-parallel "
                              f"training of whole epochs (--epochs) is not supported")
        if self.threads and self.threads % self.workers:
            raise ConfigError(f"invalid workers={self.workers} with threads={self.threads}: each worker gets "
                              f"threads / workers threads, so threads must be a multiple of workers (e.g. "
                              f"--threads {self.workers * max(1, self.threads // self.workers)})")
        if self.scaling == "strong" and self.config.batch_size < self.world:
            raise ConfigError(f"invalid workers={self.workers}: a global batch of {self.config.batch_size} "
                              f"sequences cannot be split over {self.world} workers; use --batch-size "
                              f"{self.world} or more, or --scaling weak")

    # ---- derived facts ------------------------------------------------------------
    @property
    def world(self) -> int:
        """Workers in the whole job, every machine's."""
        return self.workers * self.nodes

    @property
    def threads_per_worker(self) -> int:
        return (self.threads or 1) // self.workers

    @property
    def variant(self) -> str:
        from .backend import compile_scope

        return variant_label(self.compile, self.precision, compile_scope(self.backend) if self.compile else None)

    @property
    def label(self) -> str:
        c = self.config
        extra = f"/{c.batching}" if c.mode == "sentence" else ""
        tag = "" if self.variant == EAGER else f" [{self.variant}]"
        return (f"{self.backend}/{self.layout} {c.preset} {c.mode}{extra} B={c.batch_size}{tag}"
                + (f" x{self.world} workers" if self.world > 1 else ""))

    def identity(self, without=()) -> tuple:
        """(name, value) pairs of every setting that changes the work or the speed, in a fixed
        order; `without` leaves names out (e.g. ("backend", "layout") to set frameworks side by
        side). The model's settings come from the config, which holds the preset and overrides."""
        pairs = [("backend", self.backend), ("layout", self.layout)]
        # the config's epochs is the preset's schedule; how long this run trained is the run's
        # own steps/epochs (with --epochs N both are N); stream mode has no batching
        pairs += [(k, v) for k, v in self.config.to_dict().items()
                  if k != "epochs" and not (self.config.mode == "stream" and k == "batching")]
        pairs += [(f.name, getattr(self, f.name)) for f in dataclasses.fields(self)
                  if f.metadata["identity"] and f.name not in ("backend", "config", "layout")]
        if self.world == 1:
            pairs = [(k, v) for k, v in pairs if k != "scaling"]  # one worker: nothing is split
        return tuple((k, v) for k, v in pairs if k not in without)

    # ---- crossing the process boundary and the record ------------------------------
    def to_dict(self) -> dict:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["config"] = self.config.to_dict()
        out["warnings"] = list(self.warnings)
        return out

    @classmethod
    def from_dict(cls, d: dict) -> RunSpec:
        """The inverse of to_dict; a key this lmbench does not know is an error naming it."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ConfigError(f"unknown run setting(s) {', '.join(sorted(unknown))}: allowed: "
                              f"{', '.join(sorted(names))}")
        values = dict(d)
        values["config"] = Config(**values["config"]) if isinstance(values.get("config"), dict) else values.get("config")
        values["warnings"] = tuple(values.get("warnings") or ())
        return cls(**values)

    def recorded(self) -> dict:
        """The record's "run" table."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.metadata["recorded"]}

    @classmethod
    def from_record(cls, record: dict) -> RunSpec:
        """The settings a record ran with; what an older record leaves out gets the default
        it ran with. Machine-dependent checks (threads vs CPUs) are not made: the record ran."""
        run = {k: v for k, v in (record.get("run") or {}).items() if k in RECORDED}
        run["threads"] = run.get("threads") or record.get("threads")
        run = {k: v for k, v in run.items() if v is not None}
        return cls(backend=record["backend"], layout=record["layout"], config=Config(**record["config"]),
                   known_backend=False, **run)

    # ---- checks that depend on this machine ---------------------------------------
    def for_this_machine(self) -> RunSpec:
        """This spec with threads resolved to this machine's CPUs (default: all of them),
        refusing more threads than CPUs unless oversubscribe (then the record says so)."""
        from . import env

        cpus = env.cpu_count()
        threads = self.threads or cpus
        warnings = list(self.warnings)
        if threads > cpus:
            too_many = (f"{threads} threads on this machine's {cpus} CPU(s): the threads queue for the cores, "
                        f"so the run times the scheduler, not the framework")
            if not self.oversubscribe:
                raise ConfigError(f"invalid threads={threads}: {too_many}; use {cpus} thread(s) or fewer "
                                  f"(--threads), or pass --oversubscribe to measure it anyway (the record "
                                  f"then carries a warning)")
            if too_many not in warnings:
                warnings.append(too_many)
        return dataclasses.replace(self, threads=threads, warnings=tuple(warnings))


SETTINGS = {f.name: f for f in dataclasses.fields(RunSpec)}
RECORDED = tuple(name for name, f in SETTINGS.items() if f.metadata["recorded"])
# what a suite file may set: the run settings marked for suites, the config fields, and the
# two fields only a suite has (repeats, timeout)
SUITE_ONLY = ("repeats", "timeout")
SUITE_FIELDS = tuple(sorted({n for n, f in SETTINGS.items() if f.metadata["suite"]} | {"backend"}
                            | (set(CONFIG_FIELDS) - {"vocab_size"}) | set(SUITE_ONLY)))

# config fields settable from the command line, with their types
CONFIG_OVERRIDES = {"hidden": int, "layers": int, "num_steps": int, "batch_size": int, "dropout": float,
                    "init_scale": float, "lr": float, "decay_after": int, "lr_decay": float, "clip": float,
                    "seed": int}


def run_spec(config: Config, backend: str, layout: str = NATIVE, device: str = "auto", **settings) -> RunSpec:
    """The RunSpec of a run on this machine: validated, threads resolved (for_this_machine)."""
    return RunSpec(backend=backend, config=config, layout=layout, device=device, **settings).for_this_machine()


def make_spec(backend: str, preset: str = "small", **settings) -> RunSpec:
    """A RunSpec from flat settings, as a suite cell or the command line gives them: config
    fields (mode, batching, batch_size, ...) go into the Config, the rest are run settings.
    None means "the default"."""
    settings = {k: v for k, v in settings.items() if v is not None}
    config = {k: settings.pop(k) for k in list(settings) if k in CONFIG_FIELDS and k != "epochs"}
    if "epochs" in settings:  # `--epochs N` trains N epochs: the config's schedule and the run's length
        config["epochs"] = settings["epochs"]
    return RunSpec(backend=backend, config=make_config(preset, **config), **settings)


# ---- the command line ------------------------------------------------------------------
_TYPES = {"int": int, "count": int, "number": float, "str": str}


def add_config_args(p, mode_default="sentence") -> None:
    from .config import BATCHINGS, MODES, PRESETS

    p.add_argument("--preset", default="small", choices=sorted(PRESETS))
    p.add_argument("--mode", default=mode_default, choices=MODES)
    p.add_argument("--batching", default="random", choices=BATCHINGS, help="sentence mode")
    for name, typ in CONFIG_OVERRIDES.items():
        p.add_argument("--" + name.replace("_", "-"), type=typ, default=None, help=f"override the preset's {name}")


def add_run_args(p, only=None) -> None:
    """Every RunSpec setting the command line sets (or those named in `only`), as an option
    with its default, allowed values and help."""
    for name, f in SETTINGS.items():
        meta = f.metadata
        if not meta["cli"] or (only is not None and name not in only):
            continue
        flag = "--" + name.replace("_", "-")
        if meta["kind"] == "bool":
            p.add_argument(flag, action="store_true", help=meta["help"])
        else:
            p.add_argument(flag, type=_TYPES[meta["kind"]], default=f.default, choices=meta["choices"],
                           help=meta["help"] + (f" (default {f.default})" if f.default not in (None, ()) else ""))


def spec_from_args(a) -> RunSpec:
    """The RunSpec the `run` command's parsed options describe."""
    settings = {name: getattr(a, name) for name, f in SETTINGS.items() if f.metadata["cli"]}
    overrides = {k: getattr(a, k) for k in CONFIG_OVERRIDES}
    return make_spec(a.backend, a.preset, layout=a.layout, mode=a.mode, batching=a.batching, data_dir=a.data_dir,
                     **overrides, **settings)


# ---- records ---------------------------------------------------------------------------
def record_spec(record: dict) -> RunSpec | None:
    """The RunSpec of a record, or None where the record's settings are not a valid run
    (a record of another lmbench: the reader skips it with a warning)."""
    try:
        return RunSpec.from_record(record)
    except (ConfigError, TypeError, KeyError):
        return None


def machine_of(record: dict) -> str:
    """The machine key a record ran on (lmbench.env.record_machine_key)."""
    from . import env

    return env.record_machine_key(record)


def where(record: dict) -> tuple:
    """What a record knows of where it ran: machine, device, framework version, A/B side."""
    e = record.get("environment") or {}
    return (("machine", machine_of(record)), ("ran_on", record.get("device")),
            ("framework_version", e.get("framework_version") if isinstance(e, dict) else None),
            ("ab_side", record.get("ab_side")),
            ("ab_sources", json.dumps(record.get("ab_sources"), sort_keys=True) if record.get("ab_sources") else None))


def record_identity(record: dict, without=()) -> tuple:
    """The identity of the run a record holds: its settings' identity and where it ran. Two
    records with one identity are repeats of one measurement; nothing else is."""
    spec = RunSpec.from_record(record)
    return spec.identity(without) + tuple((k, v) for k, v in where(record) if k not in without)


def identity_text(identity: tuple) -> str:
    """A stable string of an identity (a dataframe column, a dict key across processes)."""
    return json.dumps([[k, v] for k, v in identity], sort_keys=False, default=str)
