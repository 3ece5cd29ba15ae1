"""The driver behind scripts/gpu-check.sh: lmbench's GPU measurement in a few minutes.

scripts/gpu-check.sh makes lmbench importable, checks for the GPU and starts this with
the time the script began; this runs, in order, each in its own process with a time cap:

1. what the machine is: torch's and JAX's versions and whether each sees the GPU;
2. `lmbench verify --device cuda --backends torch jax --cpu-reference torch`;
3. `lmbench peak --device cuda` (float32; the frameworks' GEMM ceilings) and
   `lmbench peak --device cuda --precision bf16` (a failure, e.g. an lmbench without that
   option, is recorded and the script goes on);
4. the cells, through `lmbench bench --deadline`, in four phases:
   A. eager float32, first runs, in the suite's order (suites/gpu-quick.toml: most
      informative first), until A's share of the time is spent;
   B. --precision bf16 and --compile for each framework's best layout (fastest in A at
      the variant's own configuration), at the two ends: the large preset at batch 128
      and the small preset at batch 20;
   C. the second and third runs of everything A and B ran, interleaved;
   D. more first runs of the suite, where A stopped;
5. `lmbench report`, and the cells left unrun listed in cells-left.txt and the log.

The budget guard: every phase hands bench only cells whose estimated time fits before
the phase ends (estimate_seconds: a model written before any GPU run, rescaled after each
phase by what the runs really took), and bench's --deadline stops starting runs, and stops
one still going, where the time for the report begins. `--dry-run` prints the plan with
each cell's estimate and runs nothing.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FRAMEWORKS = ("torch", "jax")  # the lent machine has no TensorFlow and no Paddle
BUDGET = 480  # seconds, from the start of gpu-check.sh: the 8 minutes
REPORT_RESERVE = 45  # seconds kept for `lmbench report` and packing at the end
BENCH_OVERHEAD = 3  # seconds a bench call costs besides its runs (imports, suite, PTB check)
CHUNK = 4  # runs per bench call: after each call the estimates are rescaled by what it took
SHARES = {"A": 0.60, "B": 0.85}  # phase A's and B's ends, as shares of the time for the cells
# the variants run at the two ends of the suite, fp32 twins of which phase A runs first
VARIANT_AT = ({"preset": "large", "batch_size": 128}, {"preset": "small", "batch_size": 20})
VARIANTS = ({"precision": "bf16"}, {"compile": True})

# The estimate of a run on the lent H200, written before any run there (rescaled by the
# runs' real times as the script goes). Measured on this project's 2-core CPU machine
# (lmbench run --preset small --steps 20, lmbench 0.1.0, torch 2.13 / jax 0.10, CPU):
# process start, import and data loading took ~6 s (torch and jax alike), and XLA took
# ~2.4 s per new sentence length for JAX's step (14 lengths, 33.7 s over their second
# steps). The GPU adds a CUDA context and cuDNN/cuBLAS handles; the H200's CPUs are
# faster. Hence:
START = {"torch": 10.0, "jax": 10.0}  # s: process, import, CUDA context, PTB, model
FIRST_SHAPE = {"torch": 0.1, "jax": 1.5}  # s per batch shape seen first: cuDNN plans; an XLA compile
# s: torch.compile's first compiles (a guess: two small graphs, the embedding and the decoder
# with its loss, through dynamo, inductor and Triton on a cold cache, once more for dynamic
# shapes; the LSTM stays cuDNN's)
COMPILE = {"torch": 45.0}
# Achieved model FLOP/s assumed for a step (the H200's dense peaks are ~67 TFLOP/s float32,
# ~990 bf16: an LSTM step reaches a fraction), and a floor per step, launch-bound: cuDNN's
# LSTM is a few kernels per layer; JAX's lax.scan runs a loop of small kernels per time step.
RATE = {"fp32": 20e12, "bf16": 80e12, "fp16": 80e12}
FLOOR = {"torch": 0.003, "jax": 0.008}  # s per step
TORCH_PROBE = ("import torch; cuda = torch.cuda.is_available(); print('torch', torch.__version__, '| CUDA build', "
               "torch.version.cuda, '| cuDNN', torch.backends.cudnn.version(), '| sees a GPU:', cuda, "
               "torch.cuda.get_device_name(0) if cuda else '', '| bf16:', cuda and torch.cuda.is_bf16_supported(), "
               "'| TF32 defaults: matmul', torch.backends.cuda.matmul.allow_tf32, 'cudnn', "
               "torch.backends.cudnn.allow_tf32)")
JAX_PROBE = ("import jax, jaxlib; print('jax', jax.__version__, '| jaxlib', jaxlib.__version__, '| backend', "
             "jax.default_backend(), '| devices', jax.devices())")


def say(msg: str = "") -> None:
    print(msg, flush=True)


# --- the cells ---------------------------------------------------------------------------

def ident(cell: dict) -> tuple:
    """What tells two runs of the suite apart, from a suite cell."""
    return (cell["backend"], cell["layout"], cell["preset"], cell["mode"], cell["batching"],
            cell["batch_size"], cell.get("precision", "fp32"), bool(cell.get("compile", False)))


def record_ident(r: dict) -> tuple:
    """ident() of the cell a run record came from."""
    c, run = r["config"], r.get("run") or {}
    return (r["backend"], r["layout"], c["preset"], c["mode"], c["batching"], c["batch_size"],
            run.get("precision") or "fp32", bool(run.get("compile")))


def name(cell: dict) -> str:
    tag = " ".join(["compile"] * bool(cell.get("compile")) + [cell.get("precision", "fp32")]
                   * (cell.get("precision", "fp32") != "fp32"))
    batching = f"/{cell['batching']}" if cell["mode"] == "sentence" else ""
    return (f"{cell['backend']}/{cell['layout']} {cell['preset']} {cell['mode']}{batching} "
            f"B={cell['batch_size']}" + (f" [{tag}]" if tag else ""))


def variant_cells(first: list[dict], best: dict[str, str]) -> tuple[list[dict], list[dict]]:
    """Phase B: each framework's best layout with each variant, at each end, in two rounds:
    bf16 at the large end (where bf16 pays) and compile at the small end (where it does),
    then each at the other end. Each variant cell is its fp32 twin in `first` with the
    variant set (none where the suite has no twin)."""
    rounds = ([], [])
    for i, (at, variant) in enumerate(((VARIANT_AT[0], VARIANTS[0]), (VARIANT_AT[1], VARIANTS[1]),
                                       (VARIANT_AT[1], VARIANTS[0]), (VARIANT_AT[0], VARIANTS[1]))):
        for fw in FRAMEWORKS:
            twin = next((c for c in first if c["backend"] == fw and c["mode"] == "sentence"
                         and c["batching"] == "random" and all(c[k] == v for k, v in at.items())), None)
            if twin is not None:
                rounds[i // 2].append({**twin, "layout": best.get(fw, twin["layout"]), **variant, "repeats": 1})
    return rounds


def declined(records: list[dict]) -> set[tuple[str, str]]:
    """(backend, "compile" or "bf16") that a backend recorded as skipped: not tried again."""
    out = set()
    for r in records:
        if r.get("status") == "skipped":
            run = r.get("run") or {}
            out |= {(r["backend"], "compile")} if run.get("compile") else set()
            out |= {(r["backend"], run["precision"])} if run.get("precision", "fp32") != "fp32" else set()
    return out


def variant_of(cell: dict) -> str:
    return "compile" if cell.get("compile") else cell.get("precision", "fp32")


def best_layouts(records: list[dict]) -> dict[tuple, str]:
    """{(backend, preset, batch_size): the layout with the most training words/s} over the
    ok eager float32 sentence/random runs among `records` (the median of each layout's runs)."""
    speeds: dict[tuple, dict[str, list[float]]] = {}
    for r in records:
        b, layout, preset, mode, batching, batch, precision, compiled = record_ident(r)
        if r.get("status") == "ok" and mode == "sentence" and batching == "random" and precision == "fp32" \
                and not compiled:
            speeds.setdefault((b, preset, batch), {}).setdefault(layout, []).append(
                r["metrics"]["train_words_per_sec"])
    return {k: max(v, key=lambda lay: sorted(v[lay])[len(v[lay]) // 2]) for k, v in speeds.items()}


def best_for_variants(records: list[dict]) -> dict[str, str]:
    """Each framework's best layout for phase B: fastest at the large end, else at the small."""
    best = best_layouts(records)
    out = {}
    for fw in FRAMEWORKS:
        for at in VARIANT_AT:
            key = (fw, at["preset"], at["batch_size"])
            if key in best:
                out[fw] = best[key]
                break
    return out


# --- estimates ---------------------------------------------------------------------------

class Shapes:
    """Batch shapes and padded positions of a cell's timed runs, from the real batches
    (what lmbench.run.worker makes: warmup + steps training batches from epoch 0 on)."""

    def __init__(self, data_dir=None):
        from lmbench.data.corpus import load_corpus
        from lmbench.data.download import download_ptb

        self.train = load_corpus(download_ptb(data_dir, log=lambda m: None), splits=("train",))["train"]
        self.cache: dict[tuple, tuple[int, float]] = {}

    def __call__(self, cell: dict) -> tuple[int, float]:
        """(distinct batch shapes, mean padded positions B x T per step)."""
        from lmbench.config import make_config
        from lmbench.data.corpus import make_batches

        cfg = make_config(cell["preset"], mode=cell["mode"], batching=cell["batching"],
                          batch_size=cell["batch_size"])
        n = cell.get("warmup", 10) + cell.get("steps", 200)
        key = (cfg.mode, cfg.batch_size, cfg.num_steps, cfg.batching, cfg.seed, n)
        if key not in self.cache:
            batches, epoch = [], 0
            while len(batches) < n:
                batches += make_batches(self.train, cfg.mode, cfg.batch_size, cfg.num_steps, cfg.batching,
                                        cfg.seed, epoch)
                epoch += 1
            batches = batches[:n]
            self.cache[key] = (len({b.inputs.shape for b in batches}),
                               sum(b.inputs.size for b in batches) / len(batches))
        return self.cache[key]


def estimate_seconds(cell: dict, shapes: int, positions: float) -> float:
    """A run's time on the H200 from the model above: start + first-time shapes (each run
    twice by the shape warm-up) + the steps at the assumed rate, floored per step."""
    from lmbench.config import make_config
    from lmbench.weights import flops_per_token

    fw = cell["backend"]
    cfg = make_config(cell["preset"], batch_size=cell["batch_size"])
    step = max(FLOOR.get(fw, 0.005), positions * flops_per_token(cfg) / RATE[cell.get("precision", "fp32")])
    steps = cell.get("warmup", 10) + cell.get("steps", 200) + 2 * shapes
    return (START.get(fw, 10.0) + shapes * FIRST_SHAPE.get(fw, 0.5) + steps * step
            + (COMPILE.get(fw, 30.0) if cell.get("compile") else 0.0))


def fit(queue: list, estimates: list[float], seconds: float, in_order: bool = False) -> tuple[list, list]:
    """The items of `queue`, in order, whose estimates fit in `seconds` one after the other,
    and the rest. An item too long for what is left is passed over and a later, shorter one
    may still fit; `in_order` stops at it instead (the suite's order is its priority)."""
    chosen, passed = [], []
    for item, est in zip(queue, estimates):
        if est <= seconds and not (in_order and passed):
            chosen.append(item)
            seconds -= est
        else:
            passed.append(item)
    return chosen, passed


# --- running -----------------------------------------------------------------------------

def run_step(title: str, argv: list[str], cap: float, env=None) -> tuple[int | None, float]:
    """Run one command, its output into the log, killed (its whole process group) past `cap`
    seconds; returns (exit status or None if killed, seconds)."""
    say(f"\n=== {title} (at most {cap:.0f} s): {' '.join(argv)}")
    t0 = time.time()
    proc = subprocess.Popen(argv, stdout=sys.stdout, stderr=subprocess.STDOUT, start_new_session=True,
                            env=env, stdin=subprocess.DEVNULL)
    try:
        code = proc.wait(timeout=cap)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        code = None
    took = time.time() - t0
    say(f"=== {title}: " + ("killed at its time cap" if code is None else f"exit {code}") + f" after {took:.0f} s")
    return code, took


def toml_suite(cells: list[dict]) -> str:
    """A suite file that runs exactly `cells`, in order (one [[matrix]] table each)."""
    def value(v):
        return ("true" if v else "false") if isinstance(v, bool) else json.dumps(v)

    return "".join("[[matrix]]\n" + "".join(f"{k} = {value(v)}\n" for k, v in c.items()) + "\n" for c in cells)


class Driver:
    def __init__(self, a):
        from lmbench import env

        self.a, self.py = a, a.python
        self.out = Path(a.out)
        self.results = self.out / "results"
        self.machine_dir = self.results / env.machine_key()
        self.ends = a.started_at + a.budget
        self.hard_end = self.ends - REPORT_RESERVE
        self.scale = [0.0, 0.0]  # seconds taken, seconds estimated: by the runs so far
        self.records: list[dict] = []
        self.left: list[str] = []
        self.phase_log: list[str] = []

    def now(self) -> float:
        return time.time() - self.a.started_at

    def lmbench(self, *args: str) -> list[str]:
        return [self.py, "-m", "lmbench", *args]

    def steps_before(self) -> list[tuple[str, list[str], float, float]]:
        """(title, command, time cap, estimate) of everything before the cells."""
        d, fws = self.a.device, list(FRAMEWORKS)
        return [
            ("torch: version and GPU", [self.py, "-c", TORCH_PROBE], 90, 8),
            ("jax: version and GPU", [self.py, "-c", JAX_PROBE], 90, 8),
            ("verify: torch and jax on the GPU, each other and float32 torch on the CPU",
             self.lmbench("verify", "--device", d, "--backends", *fws, "--cpu-reference", "torch",
                          "--out", str(self.machine_dir / "verify.json")), 200, 70),
            ("peak: float32 GEMM (TF32 off)",
             self.lmbench("peak", "--device", d, "--frameworks", *fws, "--results-dir", str(self.results)), 150, 25),
            ("peak: bf16 GEMM",
             self.lmbench("peak", "--device", d, "--precision", "bf16", "--frameworks", *fws,
                          "--results-dir", str(self.results)), 150, 25),
        ]

    def factor(self) -> float:
        """How much longer the runs took than estimated so far (1 before any), within [0.5, 4]."""
        took, est = self.scale
        return min(4.0, max(0.5, took / est)) if est > 0 else 1.0

    # the plan ---------------------------------------------------------------------------

    def first_cells(self) -> list[dict]:
        from lmbench.run.suite import load_suite, suite_path

        cells = [c for c in load_suite(suite_path(self.a.suite)) if c["backend"] in FRAMEWORKS]
        return [{**c, "repeats": 1} for c in cells]

    def print_plan(self, first: list[dict], shapes: Shapes) -> None:
        """The whole schedule as the estimates see it, and what is expected not to fit."""
        t = self.now()
        say(f"gpu-check plan: budget {self.a.budget:.0f} s from the script's start ({t:.0f} s gone), "
            f"{REPORT_RESERVE} s of it kept for the report; device {self.a.device}")
        say(f"{'start':>7} {'est s':>6}  step")
        for title, argv, cap, est in self.steps_before():
            say(f"{t:>7.0f} {est:>6.0f}  {title} (cap {cap:.0f} s)")
            t += est
        cells_start = t
        window = self.hard_end - self.a.started_at - cells_start
        ends = {"A": cells_start + SHARES["A"] * window, "B": cells_start + SHARES["B"] * window,
                "C": cells_start + window, "D": cells_start + window}
        est = {ident(c): estimate_seconds(c, *shapes(c)) for c in first}
        best = {fw: next(c["layout"] for c in first if c["backend"] == fw) for fw in FRAMEWORKS
                if any(c["backend"] == fw for c in first)}
        variants = [c for r in variant_cells(first, best) for c in r]
        est.update({ident(c): estimate_seconds(c, *shapes(c)) for c in variants})
        ran, left = [], []
        queue = {"A": [(c, 1) for c in first], "B": [(c, 1) for c in variants]}
        for phase in "ABCD":
            if phase == "C":
                queue["C"] = [(c, r) for r in (2, 3) for c, _ in ran]
            if phase == "D":
                queue["D"] = queue["D_rest"]
            chosen, passed = fit(queue[phase], [est[ident(c)] for c, _ in queue[phase]],
                                 ends[phase] - t - BENCH_OVERHEAD, in_order=phase in "AD")
            if phase == "A":
                queue["D_rest"] = passed
            else:
                left += passed
            say(f"-- phase {phase}: {len(chosen)} run(s) expected to fit before {ends[phase]:.0f} s"
                + {"A": " (eager float32, first runs, the suite's order)",
                   "B": " (bf16 and compile, best layout: the native one until phase A has measured)",
                   "C": " (runs 2 and 3, interleaved)", "D": " (more first runs)"}[phase])
            t += BENCH_OVERHEAD if chosen else 0
            for c, n in chosen:
                say(f"{t:>7.0f} {est[ident(c)]:>6.0f}  {name(c)}" + (f" (run {n})" if n > 1 else ""))
                t += est[ident(c)]
            if phase in "AB":
                ran += chosen
        say(f"{t:>7.0f} {REPORT_RESERVE:>6}  lmbench report")
        say(f"expected not to fit ({len(left)}):")
        for c, n in left:
            say(f"         {est[ident(c)]:>6.0f}  {name(c)}" + (f" (run {n})" if n > 1 else ""))
        say(f"estimated end: {t + REPORT_RESERVE:.0f} s of {self.a.budget:.0f} "
            f"(estimates: START {START}, per new shape {FIRST_SHAPE}, compile {COMPILE}; see scripts/gpu_check.py)")

    # the run ----------------------------------------------------------------------------

    def bench(self, phase: str, items: list[tuple[dict, int]], until: float, shapes: Shapes) -> list[tuple[dict, int]]:
        """Run the items (cell, run number) that fit before `until` (seconds from the start),
        CHUNK runs per bench call so that the estimates are rescaled by each call's real time
        before the next is chosen; returns the items not run. Records go to self.records."""
        left, in_order, calls = list(items), phase in "AD", 0
        while left:
            left_s = min(until, self.hard_end - self.a.started_at) - self.now() - BENCH_OVERHEAD
            raw = [estimate_seconds(c, *shapes(c)) for c, _ in left]
            chosen, _ = fit(left, [e * self.factor() for e in raw], left_s, in_order)
            chosen = chosen[:CHUNK]
            if not chosen:
                if not calls:
                    say(f"\n=== phase {phase}: nothing fits in the {max(left_s, 0):.0f} s left for it")
                break
            calls += 1
            rest = [item for item in left if item not in chosen]
            not_run = self.bench_call(f"{phase}{calls}", chosen, [e for item, e in zip(left, raw) if item in chosen])
            if not_run:  # the deadline came: nothing more starts
                return not_run + rest
            left = rest
        return left

    def bench_call(self, name_: str, chosen: list[tuple[dict, int]], raw: list[float]) -> list[tuple[dict, int]]:
        """One `lmbench bench --deadline` over `chosen` (estimated `raw` seconds each, before
        rescaling); returns the items it did not run, or ran only until the deadline stopped them."""
        runs: dict[tuple, dict] = {}
        for c, _ in chosen:  # a cell chosen for runs 2 and 3 is one entry with repeats 2
            runs.setdefault(ident(c), {**c, "repeats": 0})["repeats"] += 1
        suite = self.out / "suites" / f"phase-{name_}.toml"
        suite.parent.mkdir(parents=True, exist_ok=True)
        suite.write_text(f"# gpu-check phase {name_}: written by scripts/gpu_check.py\n" + toml_suite(list(runs.values())))
        before = set(self.machine_dir.glob("*.jsonl")) if self.machine_dir.is_dir() else set()
        deadline = max(self.hard_end - time.time(), 0)
        est = sum(raw) * self.factor()
        env = {**os.environ, "TQDM_DISABLE": "1"}  # bench's progress bar: a log is no terminal
        code, took = run_step(f"phase {name_}: {len(chosen)} run(s), estimated {est:.0f} s",
                              self.lmbench("bench", "--suite", str(suite), "--device", self.a.device,
                                           "--results-dir", str(self.results), "--no-report",
                                           "--deadline", f"{deadline:.0f}"),
                              deadline + 60, env)
        new = self.read_new(before)
        self.records += new
        counts: dict[tuple, int] = {}
        for r in new:
            if r.get("error_kind") != "deadline":  # stopped halfway: measured nothing
                counts[record_ident(r)] = counts.get(record_ident(r), 0) + 1
        not_run, done = [], 0.0
        for (c, n), e in zip(chosen, raw):  # bench ran them in this order: the first `count` of each cell
            if counts.get(ident(c), 0) > 0:
                counts[ident(c)] -= 1
                done += e
            else:
                not_run.append((c, n))
        if done:  # what these runs took against their estimates: later estimates scale by it
            self.scale[0] += took
            self.scale[1] += done
        self.phase_log.append(f"phase {name_}: {len(chosen) - len(not_run)} of {len(chosen)} run(s) recorded, "
                              f"estimated {est:.0f} s, took {took:.0f} s; estimates now x{self.factor():.2f}")
        say(self.phase_log[-1])
        return not_run

    def read_new(self, before: set) -> list[dict]:
        from lmbench.results import load_records

        files = sorted(set(self.machine_dir.glob("*.jsonl")) - before) if self.machine_dir.is_dir() else []
        return load_records(files, warn=say) if files else []

    def run(self) -> int:
        shapes = Shapes(self.a.data_dir)
        first = self.first_cells()
        self.print_plan(first, shapes)
        if self.a.dry_run:
            return 0
        self.out.mkdir(parents=True, exist_ok=True)
        failed_steps = []
        for title, argv, cap, est in self.steps_before():
            if self.now() + est > self.hard_end - self.a.started_at:
                self.left.append(f"{title}: not started, the budget was spent")
                continue
            code, _ = run_step(title, argv, min(cap, self.hard_end - time.time()))
            if code != 0:
                failed_steps.append(title)
        cells_start = self.now()
        window = self.hard_end - self.a.started_at - cells_start
        until = {p: cells_start + SHARES[p] * window for p in SHARES}
        rest = self.bench("A", [(c, 1) for c in first], until["A"], shapes)
        best = best_for_variants(self.records)
        say(f"best layouts (phase A's words/s at the variants' configurations): {best or 'none measured'}")
        b1, b2 = variant_cells(first, best)
        left = self.bench("B1", [(c, 1) for c in b1], until["B"], shapes)
        no = declined(self.records)  # e.g. jax declines --compile: its step is one XLA program already
        left += self.bench("B2", [(c, 1) for c in b2 if (c["backend"], variant_of(c)) not in no], until["B"], shapes)
        ok = [record_ident(r) for r in self.records if r["status"] == "ok"]
        done = {ident(c): c for c in first + b1 + b2 if ident(c) in ok}
        left += self.bench("C", [(c, n) for n in (2, 3) for c in done.values()], math.inf, shapes)
        left += self.bench("D", rest, math.inf, shapes)
        self.finish(left, failed_steps)
        return 0

    def finish(self, left: list[tuple[dict, int]], failed_steps: list[str]) -> None:
        self.left += [name(c) + (f" (run {n})" if n > 1 else "") for c, n in left]
        (self.out / "cells-left.txt").write_text(
            f"# gpu-check: what the {self.a.budget:.0f} s budget left unrun ({len(self.left)})\n"
            + "".join(f"{x}\n" for x in self.left))
        say(f"\n=== not run, the budget spent ({len(self.left)}; also in cells-left.txt):")
        for x in self.left:
            say(f"  {x}")
        report = self.out / "report"
        if self.records or self.machine_dir.is_dir():
            code, _ = run_step("report", self.lmbench("report", str(self.results), "--out", str(report)),
                               max(30.0, self.ends - time.time() + 30))
            if code == 0 and (report / "report.md").is_file():
                say("\n" + (report / "report.md").read_text())
        say("\n=== timing")
        for line in self.phase_log:
            say(f"  {line}")
        counts = {s: sum(r["status"] == s for r in self.records) for s in ("ok", "skipped", "failed")}
        say(f"  {len(self.records)} run(s) recorded: {counts['ok']} ok, {counts['skipped']} skipped, "
            f"{counts['failed']} failed; steps failed: {', '.join(failed_steps) or 'none'}; "
            f"{self.now():.0f} s of {self.a.budget:.0f}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="scripts/gpu_check.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", help="the output folder: results/, report/, suites/, cells-left.txt")
    p.add_argument("--started-at", type=float, default=None, help="when gpu-check.sh began (epoch seconds)")
    p.add_argument("--budget", type=float, default=BUDGET, help=f"seconds in all (default {BUDGET})")
    p.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    p.add_argument("--suite", default="gpu-quick", help="a name in suites/ or a .toml file (default gpu-quick)")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--python", default=sys.executable, help="the interpreter that runs lmbench")
    p.add_argument("--dry-run", action="store_true", help="print the plan and the estimates; run nothing")
    a = p.parse_args(argv)
    if a.started_at is None:
        a.started_at = time.time()
    if not (a.budget > REPORT_RESERVE):
        p.error(f"--budget {a.budget:g}: must be more than the {REPORT_RESERVE} s kept for the report")
    return Driver(a).run()


if __name__ == "__main__":
    sys.exit(main())
