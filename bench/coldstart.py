"""Cold start: the import time of function_app against an eager import of the heavy SDKs.

Each import runs in a fresh interpreter, alternating the two, several rounds; medians and their
ratio print side by side (goal: ratio <= 0.15). Prints figures; never passes or fails on time.
"""
from __future__ import annotations

import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ROUNDS = 7
PROBE = ("import time; t = time.perf_counter(); {imports}; "
         "print(time.perf_counter() - t)")
CANDIDATES = {
    "function_app": "import function_app",
    "eager SDKs": "import azureml.core, azureml.pipeline.core, azure.storage.blob, azure.eventgrid",
}


def measure(imports: str) -> float:
    out = subprocess.run([sys.executable, "-c", PROBE.format(imports=imports)], cwd=REPO, check=True,
                         capture_output=True, text=True).stdout
    return float(out.strip().splitlines()[-1])


def main() -> None:
    times: dict[str, list[float]] = {name: [] for name in CANDIDATES}
    for name, imports in CANDIDATES.items():
        measure(imports)  # warm the OS file cache once, so both sides are measured alike
    for _ in range(ROUNDS):
        for name, imports in CANDIDATES.items():
            times[name].append(measure(imports))
    medians = {name: statistics.median(values) for name, values in times.items()}
    for name, median in medians.items():
        print(f"{name:>14}: median {median * 1000:8.1f} ms over {ROUNDS} fresh interpreters")
    ratio = medians["function_app"] / medians["eager SDKs"]
    print(f"{'ratio':>14}: {ratio:.3f}  (goal <= 0.15)")


if __name__ == "__main__":
    main()
