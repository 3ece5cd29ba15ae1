"""lmbench's backends against each framework's own public example program, same work.

For each framework, --runs rounds of two processes, the order alternating (A B, B A, ...):
  A  `lmbench run --backend FW --layout <native, or --layout FW=L> --mode stream --preset small --steps S
     --warmup W --eval none --threads K --out <temp file>`: metrics.train_words_per_sec
     of its record;
  B  the public program written from its description (same batches, initial weights,
     objective, clip and state carrying; see each script's docstring for what it keeps
     and what differs):
       torch   benchmarks/public_torch_wlm.py    pytorch/examples word_language_model
       paddle  benchmarks/public_paddle_ptb.py   PaddlePaddle/models dygraph/ptb_lm
       jax     benchmarks/public_jax_lstm_lm.py  google/flax examples/sst2 (Flax + optax;
               flax and optax must be installed, they are not lmbench dependencies)
       tensorflow benchmarks/public_tf1_ptb.py   tensorflow/models tutorials/rnn/ptb (TF1
               graph, static unroll; its embedding update dense unless --tensorflow-sparse)
     with the same --steps, --warmup and --threads: its train_words_per_sec.
Each round's ratio is A / B (lmbench's speed over the public program's: above 1 = lmbench
faster); printed per framework: both sides' median words/s, the median ratio and its
min-max over the rounds, and both sides' first-window loss (summed NLL / B: equal = the
same function from the same weights). Plain text, for results/public-programs/.

    LMBENCH_PTB_MIRROR=... python benchmarks/public_programs_ab.py --runs 5 --threads 2
    python benchmarks/public_programs_ab.py --frameworks tensorflow --layout tensorflow=unrolled
"""
import argparse
import datetime
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from lmbench.backend import native_layout
from lmbench.env import cpu_model

HERE = Path(__file__).resolve().parent
PUBLIC = {"torch": "public_torch_wlm.py", "paddle": "public_paddle_ptb.py", "jax": "public_jax_lstm_lm.py",
          "tensorflow": "public_tf1_ptb.py"}

p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
p.add_argument("--frameworks", nargs="+", default=list(PUBLIC), choices=list(PUBLIC))
p.add_argument("--layout", action="append", default=[], metavar="FW=LAYOUT",
               help="lmbench's layout for FW (default: its native one), e.g. tensorflow=unrolled")
p.add_argument("--runs", type=int, default=5, help="rounds (process pairs) per framework")
p.add_argument("--steps", type=int, default=200, help="timed stream windows per process")
p.add_argument("--warmup", type=int, default=20, help="untimed windows before them (at least 1)")
p.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
p.add_argument("--paddle-rnn", choices=("SimpleLSTMRNN", "nn.LSTM"), default="SimpleLSTMRNN",
               help="public_paddle_ptb.py --rnn: the example's own LSTM (default) or its nn.LSTM variant")
p.add_argument("--tensorflow-sparse", action="store_true",
               help="public_tf1_ptb.py --sparse: the program's own sparse embedding update (different work)")
p.add_argument("--timeout", type=float, default=1800, help="seconds one process may take")
args = p.parse_args()
if args.runs < 1 or args.steps < 1 or args.warmup < 1 or args.threads < 1:
    p.error("--runs, --steps, --warmup and --threads must be at least 1")
LAYOUT = {fw: native_layout(fw) for fw in PUBLIC}
for item in args.layout:
    fw, _, layout = item.partition("=")
    if fw not in PUBLIC or not layout:
        p.error(f"--layout {item!r}: use FW=LAYOUT with FW one of {', '.join(PUBLIC)}")
    LAYOUT[fw] = layout


def run(cmd):
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        raise SystemExit(f"timed out after {args.timeout:.0f} s: {shlex.join(cmd)}") from None
    if out.returncode:
        raise SystemExit(f"exit {out.returncode}: {shlex.join(cmd)}\n{(out.stdout + out.stderr)[-3000:]}")
    return out


def lmbench_side(fw, workdir):
    """(words/s, first window's summed NLL / B) of one `lmbench run`."""
    record_file = Path(workdir) / f"{fw}.jsonl"
    record_file.unlink(missing_ok=True)
    run([sys.executable, "-m", "lmbench", "run", "--backend", fw, "--layout", LAYOUT[fw], "--mode", "stream",
         "--preset", "small", "--steps", str(args.steps), "--warmup", str(args.warmup), "--eval", "none",
         "--threads", str(args.threads), "--quiet", "--out", str(record_file)])
    record = json.loads(record_file.read_text().strip().splitlines()[-1])
    if record["status"] != "ok":
        raise SystemExit(f"lmbench run --backend {fw}: status {record['status']}: {record.get('error')}")
    m = record["metrics"]
    return m["train_words_per_sec"], m["first_loss"] / record["config"]["batch_size"]


def public_side(fw):
    """(words/s, first window's summed NLL / B, program) of one run of the public program."""
    extra = {"paddle": ["--rnn", args.paddle_rnn],
             "tensorflow": ["--sparse"] if args.tensorflow_sparse else []}.get(fw, [])
    out = run([sys.executable, str(HERE / PUBLIC[fw]), "--steps", str(args.steps), "--warmup", str(args.warmup),
               "--threads", str(args.threads), *extra])
    result = json.loads(out.stdout.strip().splitlines()[-1])
    return result["train_words_per_sec"], result["first_loss"], result["program"]


def main():
    load_before = os.getloadavg()
    command = shlex.join(["python", os.path.relpath(__file__), *sys.argv[1:]])
    print("# lmbench vs each framework's public example program: stream mode, small preset")
    print(f"date         {datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}")
    print(f"cpu          {cpu_model()} ({len(os.sched_getaffinity(0))} CPUs usable)")
    print(f"load before  {' '.join(f'{x:.2f}' for x in load_before)}")
    print(f"command      {command}")
    print(f"per process  --steps {args.steps} --warmup {args.warmup} --threads {args.threads}; "
          f"{args.runs} rounds per framework, order A B, B A, ...; ratio = lmbench / public per round")
    print(flush=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="lmbench-public-ab-") as workdir:
        for fw in args.frameworks:
            a, b, ratios, program, loss_a, loss_b = [], [], [], None, None, None
            for r in range(args.runs):
                order = ("A", "B") if r % 2 == 0 else ("B", "A")
                for side in order:
                    if side == "A":
                        wps, loss_a = lmbench_side(fw, workdir)
                        a.append(wps)
                    else:
                        wps, loss_b, program = public_side(fw)
                        b.append(wps)
                ratios.append(a[-1] / b[-1])
                print(f"{fw:<7} round {r + 1}/{args.runs} ({' '.join(order)}): lmbench {a[-1]:>9,.0f}  "
                      f"public {b[-1]:>9,.0f} words/s  ratio {ratios[-1]:.3f}", flush=True)
            rows.append(dict(fw=fw, layout=LAYOUT[fw], program=program, a=statistics.median(a),
                             b=statistics.median(b), ratio=statistics.median(ratios), lo=min(ratios),
                             hi=max(ratios), n=len(ratios), loss_a=loss_a, loss_b=loss_b))
    print()
    print(f"{'framework':<11}{'lmbench layout':<16}{'lmbench w/s':>12}{'public w/s':>12}{'ratio':>8}"
          f"{'min-max':>14}{'rounds':>8}  first loss lmbench / public")
    for r in rows:
        print(f"{r['fw']:<11}{r['layout']:<16}{r['a']:>12,.0f}{r['b']:>12,.0f}{r['ratio']:>8.3f}"
              f"{r['lo']:>8.3f}-{r['hi']:.3f}{r['n']:>8}  {r['loss_a']:.4f} / {r['loss_b']:.4f}")
    print()
    for r in rows:
        print(f"public {r['fw']}: {r['program']}")
    print(f"load after   {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
