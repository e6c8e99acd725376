"""Brute force on the household cluster: try every candidate, keep the best.

A measured signal (the reference data, 4 MB of numpy) is compared with the model sin(f*t + p) for every
candidate frequency f and phase p; the candidate with the smallest squared error wins. Every task needs the
same reference, so it is *scattered*: sent to each worker once when the block starts, not pickled into each
of the hundreds of tasks. Tasks are grouped `batch_size` candidates at a time, so the scheduler handles a few
dozen tasks instead of thousands of tiny ones.

Run it (the cluster must be running):

    homecluster up
    python examples/brute_force.py                        # ./inventory.yaml or $HOMECLUSTER_INVENTORY
    python examples/brute_force.py --inventory ~/home.yaml --candidates 2000 --batch-size 16
    homecluster run examples/brute_force.py               # same lookup; not -i (see examples/README.md)
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from joblib import Parallel, delayed

from homecluster import joblib_on_cluster

N_SAMPLES = 500_000                      # 500k float64 = 4 MB of reference data
DURATION = 20.0                          # seconds of signal
TRUE_FREQUENCY, TRUE_PHASE = 3.3, 1.2    # what the search should find


def make_reference(n_samples: int = N_SAMPLES, seed: int = 0) -> np.ndarray:
    """The measured signal: a sine wave plus noise."""
    t = np.linspace(0.0, DURATION, n_samples)
    noise = np.random.default_rng(seed).normal(scale=0.5, size=n_samples)
    return np.sin(TRUE_FREQUENCY * t + TRUE_PHASE) + noise


def make_candidates(n_candidates: int) -> list[tuple[float, float]]:
    """A grid of (frequency, phase) pairs that contains the true pair."""
    n_phases = 10
    n_freqs = max(1, n_candidates // n_phases)
    freqs = TRUE_FREQUENCY + 0.05 * (np.arange(n_freqs) - n_freqs // 2)
    phases = TRUE_PHASE + 0.2 * (np.arange(n_phases) - n_phases // 2)
    grid = [(round(float(f), 6), round(float(p), 6)) for f in freqs for p in phases]
    return grid[:n_candidates]


def cost(frequency: float, phase: float, reference: np.ndarray) -> float:
    """Mean squared error of the model against the reference (runs on a worker)."""
    t = np.linspace(0.0, DURATION, reference.size)
    return float(np.mean((reference - np.sin(frequency * t + phase)) ** 2))


def main(inventory: str | None = None, n_candidates: int = 1000, batch_size: int = 16) -> dict:
    reference = make_reference()
    candidates = make_candidates(n_candidates)
    start = time.perf_counter()
    # scatter=[reference]: joblib sends it to every worker once and passes a reference to it in the tasks.
    # It recognises the object by identity, so pass `reference` itself as an argument (not a copy, and not
    # inside a tuple, dict or closure, which would be pickled into every task).
    with joblib_on_cluster(inventory, scatter=[reference]):
        costs = Parallel(n_jobs=-1, batch_size=batch_size, pre_dispatch="3*n_jobs")(
            delayed(cost)(f, p, reference) for f, p in candidates)
    best = int(np.argmin(costs))
    return {"frequency": candidates[best][0], "phase": candidates[best][1], "cost": costs[best],
            "n_candidates": len(candidates), "seconds": round(time.perf_counter() - start, 2)}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--inventory", help="inventory file (default: $HOMECLUSTER_INVENTORY, else ./inventory.yaml)")
    ap.add_argument("--candidates", type=int, default=1000)
    ap.add_argument("--batch-size", type=int, default=16)
    args = ap.parse_args()
    result = main(args.inventory, args.candidates, args.batch_size)
    print(f"best of {result['n_candidates']} candidates: frequency {result['frequency']}, "
          f"phase {result['phase']}, cost {result['cost']:.4f} ({result['seconds']} s)")
