"""scikit-learn on the household cluster: a GridSearchCV whose fits run on every machine.

Nothing in the scikit-learn code changes: `n_jobs=-1` inside `joblib_on_cluster()` sends each
(parameter, fold) fit to the cluster instead of to local processes. The workers need scikit-learn: add it to
the inventory's `environment.packages` and run `homecluster setup`.

Run it (the cluster must be running):

    homecluster up
    python examples/grid_search.py                        # ./inventory.yaml or $HOMECLUSTER_INVENTORY
    python examples/grid_search.py --inventory ~/home.yaml
    python examples/grid_search.py --local                # the same search on this machine only
    homecluster run examples/grid_search.py               # same lookup; not -i (see examples/README.md)
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV

from homecluster import joblib_on_cluster


def make_search(n_values: int = 20, n_jobs: int = -1) -> tuple[GridSearchCV, np.ndarray, np.ndarray]:
    X, y = make_classification(n_samples=2000, n_features=20, n_informative=5, random_state=0)
    search = GridSearchCV(LogisticRegression(max_iter=1000), {"C": np.logspace(-2, 2, n_values)}, cv=3,
                          n_jobs=n_jobs)
    return search, X, y


def main(inventory: str | None = None, n_values: int = 20) -> tuple[dict, float]:
    """The search on the cluster: (best_params_, best_score_)."""
    search, X, y = make_search(n_values)
    with joblib_on_cluster(inventory):
        search.fit(X, y)
    return search.best_params_, search.best_score_


def local(n_values: int = 20) -> tuple[dict, float]:
    """The same search on this machine alone, to compare with."""
    search, X, y = make_search(n_values, n_jobs=1)
    search.fit(X, y)
    return search.best_params_, search.best_score_


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--inventory", help="inventory file (default: $HOMECLUSTER_INVENTORY, else ./inventory.yaml)")
    ap.add_argument("--values", type=int, default=20, help="how many values of C (default 20)")
    ap.add_argument("--local", action="store_true", help="run on this machine, without the cluster")
    args = ap.parse_args()
    start = time.perf_counter()
    params, score = local(args.values) if args.local else main(args.inventory, args.values)
    where = "locally" if args.local else "on the cluster"
    print(f"best C {params['C']:.4g}, mean accuracy {score:.4f} ({where}, {time.perf_counter() - start:.1f} s)")
