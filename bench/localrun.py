"""Local runner benchmark: prints figures side by side, measured in one run. Never passes or fails.

1. cold pipeline run (every step executes) vs the two step scripts run by hand in sequence;   goal <= 1.2
2. warm rerun (every step reused) vs the cold run;                                             goal <= 0.1
3. peak memory of a process hashing a 1 GB file;                                               goal <= 100 MB

Both sides of 1 log to an MLflow SQLite store created beforehand (creating the schema is a one-off cost
of a new state folder, reported apart). Each figure is the median of --repeat runs, after one discarded
warm-up of the scripts (so both sides find the libraries in the page cache). Rows marked "CLI" are whole
`python -m retrainer run-local` processes, interpreter start and imports included.

    .venv/bin/python bench/localrun.py [--repeat 3] [--data data/diabetes_sample.csv]
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

GIB = 1 << 30


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "diabetes_sample.csv")
    args = parser.parse_args()

    print(f"date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.platform()}, "
          f"Python {platform.python_version()}, load average {os.getloadavg()[0]:.2f}")
    print(f"data: {args.data} ({args.data.stat().st_size / 1e6:.2f} MB), repeat {args.repeat}\n")
    with tempfile.TemporaryDirectory(prefix="bench-localrun-") as scratch:
        scratch = Path(scratch)
        data = scratch / "diabetes.csv"
        shutil.copy(args.data, data)
        timings(scratch, data, args.repeat)
        hashing(scratch)


def timings(scratch: Path, data: Path, repeat: int) -> None:
    from mlflow.tracking import MlflowClient

    template = scratch / "template.db"
    started = time.perf_counter()
    MlflowClient(tracking_uri=f"sqlite:///{template}").search_experiments()
    schema_seconds = time.perf_counter() - started

    started = time.perf_counter()
    from retrainer.localrun import run_pipeline
    from retrainer.pipelines import load_definition, local_datastore

    definition = load_definition("diabetes_training", datastore=local_datastore("training_data", "incoming"),
                                 compute_target="cpu-cluster")
    load_seconds = time.perf_counter() - started

    def fresh_state(name: str) -> Path:
        state = scratch / name
        state.mkdir()
        shutil.copy(template, state / "mlflow.db")
        return state

    def by_hand(state: Path) -> float:
        workdir = state / "scripts"
        shutil.copytree(ROOT / "step_scripts", workdir, ignore=shutil.ignore_patterns("__pycache__"))
        env = {**_clean_env(), "MLFLOW_TRACKING_URI": f"sqlite:///{state / 'mlflow.db'}"}
        started = time.perf_counter()
        for command in (["prep_diabetes.py", "--input-data", str(data), "--prepped-data", str(state / "prepped")],
                        ["train_diabetes.py", "--training-data", str(state / "prepped")]):
            subprocess.run([sys.executable, *command], cwd=workdir, env=env, check=True, capture_output=True)
        return time.perf_counter() - started

    def pipeline(state: Path) -> float:
        started = time.perf_counter()
        result = run_pipeline(definition, parameters={"input_data": str(data)}, state_dir=state,
                              tracking_uri=f"sqlite:///{state / 'mlflow.db'}", experiment="bench")
        assert result.status == "Completed", result.error
        return time.perf_counter() - started

    def cli(state: Path) -> float:
        env = {**_clean_env(), "RETRAINER_STATE_DIR": str(state)}
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "retrainer", "run-local", "diabetes_training", "--param",
                        f"input_data={data}", "--json"], cwd=ROOT, env=env, check=True, capture_output=True)
        return time.perf_counter() - started

    by_hand(fresh_state("warmup"))
    hand, cold, warm, cli_cold, cli_warm = [], [], [], [], []
    for round_number in range(repeat):   # interleaved, so load from elsewhere hits every column alike
        hand.append(by_hand(fresh_state(f"hand{round_number}")))
        state = fresh_state(f"pipeline{round_number}")
        cold.append(pipeline(state))
        warm.append(pipeline(state))
        state = fresh_state(f"cli{round_number}")
        cli_cold.append(cli(state))
        cli_warm.append(cli(state))

    m = statistics.median
    print("one-off costs (not in the ratios)")
    print(f"  create the MLflow SQLite schema      {schema_seconds:7.2f} s")
    print(f"  import the runner, load the definition{load_seconds:7.2f} s\n")
    print(f"{'measure':<44}{'median s':>10}   runs")
    rows = [("two scripts by hand, in sequence", hand), ("cold pipeline run (run_pipeline)", cold),
            ("warm rerun, every step reused (run_pipeline)", warm), ("CLI cold run", cli_cold),
            ("CLI warm rerun", cli_warm)]
    for label, values in rows:
        print(f"  {label:<42}{m(values):10.2f}   {', '.join(f'{v:.2f}' for v in values)}")
    print()
    print(f"  cold / by hand   = {m(cold) / m(hand):.3f}   (goal <= 1.2)")
    print(f"  warm / cold      = {m(warm) / m(cold):.3f}   (goal <= 0.1)")
    print(f"  CLI cold / hand  = {m(cli_cold) / m(hand):.3f}   (the CLI adds interpreter, azureml and mlflow "
          "imports)")
    print(f"  CLI warm / cold  = {m(cli_warm) / m(cli_cold):.3f}\n")


def hashing(scratch: Path) -> None:
    big = scratch / "one_gib.bin"
    block = os.urandom(1 << 20)
    with open(big, "wb") as handle:
        for _ in range(GIB // len(block)):
            handle.write(block)
    # The child reads its own high-water mark (VmHWM): exec starts a fresh address space, whereas
    # wait4()'s ru_maxrss would count the pages this (large) parent had at fork time.
    peak = ("def peak():\n    for line in open('/proc/self/status'):\n        if line.startswith('VmHWM:'):\n"
            "            return int(line.split()[1]) * 1024\n")
    code = (peak + "import sys, time\nsys.path.insert(0, sys.argv[2])\nfrom retrainer.hashing import DigestCache\n"
            "before = peak()\nt = time.perf_counter()\nDigestCache().file(sys.argv[1])\n"
            "print(time.perf_counter() - t, before, peak())\n")
    try:
        done = subprocess.run([sys.executable, "-c", code, str(big), str(ROOT)], capture_output=True, text=True,
                              check=True)
    finally:
        big.unlink()
    seconds, before, after = (float(v) for v in done.stdout.split())
    print("hashing a 1 GiB file (a fresh process; peak resident memory = its VmHWM)")
    print(f"  peak RSS of the process  {after / 1e6:7.1f} MB   (goal <= 100 MB)")
    print(f"  of which before hashing  {before / 1e6:7.1f} MB   (interpreter + module)")
    print(f"  throughput               {GIB / seconds / 1e6:7.0f} MB/s")


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("RETRAINER_", "MLFLOW_"))}


if __name__ == "__main__":
    main()
