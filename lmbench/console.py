"""What `lmbench run` shows while it runs and when it ends: the phases with a bar and an
ETA, one summary line, and a warning when the run's numbers should not be trusted.

The worker reports progress over its FIFO (lmbench.run.worker.Progress): "start" once the
process is up (then it imports its framework and loads the data), "cold shapes" (the
untimed first steps on every new batch shape), "warm-up", the timed steps ("train", or
"epoch N" in a training of whole epochs), "evaluation". On a terminal each phase gets a
bar (tqdm: its rate and ETA); elsewhere (a log, a pipe) one line per phase and per
reported step count, so that a log stays readable.
"""
from __future__ import annotations

import sys
import time

# Step time p90/p50 above this: the run is flagged as unreliable. In the suites recorded on
# a quiet machine (docs/report-example/*.jsonl) p90/p50 is at most 1.38 with random batching,
# 1.12 in stream mode and 1.75 with bucketed batching (buckets differ in length, so their
# steps differ in work); in the `check` suite recorded while other work shared the 2 cores
# (tests/data/check-repeats/: load average 0.9-8.9) the median run of a session shows
# 2.1-3.6 and the worst 10.9.
STEP_SPREAD_LIMIT = 2.0


def reliability_warnings(record: dict) -> list[str]:
    """Why a finished run's numbers may not hold: a wide step-time spread, a machine busy
    with other work during the timed window (metrics.busy, where the worker measured it)."""
    m = record.get("metrics") or {}
    if record.get("status") != "ok":
        return []
    out = []
    st = m.get("step_time_ms") or {}
    if st.get("median") and st.get("p90") and st["p90"] / st["median"] > STEP_SPREAD_LIMIT:
        out.append(f"unreliable: step time p90/p50 = {st['p90'] / st['median']:.2f} > {STEP_SPREAD_LIMIT:g} "
                   f"(p50 {st['median']:.1f} ms, p90 {st['p90']:.1f} ms): steps that should take alike "
                   f"times did not; other work on the machine is the usual cause: rerun when it is quiet")
    busy = m.get("busy")
    if isinstance(busy, dict) and busy.get("busy"):
        out.append(f"unreliable: the machine was busy during the timed window ({busy.get('why') or 'busy'})")
    return out


def summary_line(record: dict, saved_to: str | None) -> str:
    """The last line of `lmbench run`: the numbers that matter, and where the record went."""
    where = f"record appended to {saved_to}" if saved_to else "record not saved (--no-save)"
    status = record.get("status")
    if status == "skipped":
        return f"skipped: {str(record.get('reason') or '').splitlines()[0][:200]}; {where}"
    if status != "ok":
        why = str(record.get("error") or "").strip().splitlines()
        return f"FAILED ({record.get('error_kind') or 'error'}): {why[0][:200] if why else ''}; {where}"
    m = record["metrics"]
    parts = [f"{m['train_words_per_sec']:,.0f} words/s"]
    st = m.get("step_time_ms") or {}
    if st.get("median") is not None:
        parts.append(f"step {_ms(st['median'])} ms [{_ms(st['p10'])}–{_ms(st['p90'])}]")
    else:
        parts.append(f"step times: {m.get('step_time_source') or 'none'}")
    ppl = next(((s, m[f"{s}_ppl"]) for s in ("valid", "test", "train") if m.get(f"{s}_ppl") is not None), None)
    if ppl:
        parts.append(f"{ppl[0]} ppl {ppl[1]:.2f}")
    if m.get("peak_memory_bytes"):
        kind = "device" if m.get("peak_memory_kind") == "device" else "peak RSS"
        parts.append(f"{m['peak_memory_bytes'] / 2**20:,.0f} MiB {kind}")
    return " | ".join(parts) + f"; {where}"


def _ms(v: float) -> str:
    return f"{v:.1f}" if v < 100 else f"{v:,.0f}"


def _clock(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 60}:{seconds % 60:02d}"


PHASE_NAMES = {"start": "start: importing the framework, loading the data", "cold shapes": "cold shapes",
               "warm-up": "warm-up", "train": "timed steps", "evaluation": "evaluation"}


class RunDisplay:
    """Turns the worker's progress events into a display on `out` (stderr)."""

    def __init__(self, out=None, bar: bool | None = None):
        self.out = out or sys.stderr
        self.use_bar = self.out.isatty() if bar is None else bar
        self.t0 = time.monotonic()
        self.phase = None
        self.bar = None
        self.phase_t0 = self.t0
        self.last_step = None
        self.first_step = 0

    def __call__(self, event: dict) -> None:
        phase = event.get("phase")
        if phase == "epoch":  # the end of an epoch of a training: its line stays
            self._write(f"  epoch {event['epoch']}: lr {event['lr']:.4g} train ppl {event['train_ppl']:.2f}"
                        + (f" valid ppl {event['valid_ppl']:.2f}" if "valid_ppl" in event else ""))
            return
        if phase is None:
            return
        if phase != self.phase:
            self._begin(phase, event)
        self._update(event)

    def _name(self, phase: str) -> str:
        return PHASE_NAMES.get(phase, phase)

    def _begin(self, phase: str, event: dict) -> None:
        self._done()
        self.phase, self.phase_t0, self.last_step = phase, time.monotonic(), None
        total, self.first_step = event.get("steps"), event.get("step") or 0  # timed steps follow the warm-up
        if phase == "evaluation":
            detail = f": {event['batches']} batches of {event['split']}" if "batches" in event else ""
        else:
            detail = f": {total - self.first_step} {'shapes' if phase == 'cold shapes' else 'steps'}" if total else ""
        if self.use_bar and total:
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=self.first_step, desc=self._name(phase), file=self.out,
                            unit="shape" if phase == "cold shapes" else "step", dynamic_ncols=True, leave=False)
        else:
            self._write(f"  [{_clock(time.monotonic() - self.t0)}] {self._name(phase)}{detail}")

    def _update(self, event: dict) -> None:
        step, total = event.get("step"), event.get("steps")
        if step is None or not total:
            return
        wps = event.get("words_per_sec")
        if self.bar is not None:
            self.bar.update(step - self.bar.n)
            if wps:
                self.bar.set_postfix_str(f"{wps:,.0f} words/s")
            return
        if "words_per_sec" not in event or step == self.last_step or step <= self.first_step:
            return  # in a log: the worker's every-100-steps reports only, not the bar's ticks
        self.last_step = step
        elapsed = time.monotonic() - self.phase_t0
        eta = elapsed / (step - self.first_step) * (total - step)
        self._write(f"  {self._name(self.phase)}: {step}/{total}" + (f" {wps:,.0f} words/s" if wps else "")
                    + (f", ETA {_clock(eta)}" if step < total else ""))

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def finish(self) -> None:
        """The run is over: the last phase's line, no bar left on the screen."""
        self._done()
        self.phase = None

    def _done(self) -> None:
        """A finished phase leaves one line (its bar, if any, goes)."""
        self.close()
        if self.phase is not None:
            self._write(f"  {self._name(self.phase)} done in {time.monotonic() - self.phase_t0:.1f} s")

    def _write(self, line: str) -> None:
        if self.bar is not None:
            self.bar.write(line, file=self.out)
        else:
            print(line, file=self.out, flush=True)
