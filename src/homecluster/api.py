"""The Python API for notebooks and scripts: connect to the cluster an inventory describes, install packages,
upload code, and run scikit-learn/joblib on it.

    from homecluster import connect
    client = connect()                      # ./inventory.yaml, or $HOMECLUSTER_INVENTORY
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager

from homecluster import scheduler
from homecluster.errors import HomeclusterError
from homecluster.inventory import Inventory, inventory_path, load
from homecluster.core.spec import scheduler_address as _address


def load_inventory(inventory: str | Inventory | None = None) -> Inventory:
    return inventory if isinstance(inventory, Inventory) else load(inventory_path(inventory))


def scheduler_address(inventory: str | Inventory | None = None) -> str:
    """The address of the scheduler the inventory describes, e.g. tls://192.168.1.10:8786."""
    return _address(load_inventory(inventory))


def connect(inventory: str | Inventory | None = None, timeout: float = 10, **client_kwargs):
    """A dask Client connected to the inventory's running cluster (start it with `homecluster up`), with this
    machine's client certificate when the cluster uses TLS (the default)."""
    return scheduler.client(scheduler.endpoint(load_inventory(inventory)), timeout=timeout, **client_kwargs)


def cluster_client(inventory: str | Inventory | None = None):
    """connect() for the CLI: a cluster that is not running is a one-line error with the fix."""
    try:
        return connect(inventory)
    except OSError as e:
        raise HomeclusterError(f"no scheduler answers at {scheduler_address(inventory)} ({e}). "
                               "Fix: homecluster up") from None


@contextmanager
def joblib_on_cluster(inventory: str | Inventory | None = None, scatter: list | None = None, **backend_kwargs):
    """Run joblib (and scikit-learn's n_jobs=-1) on the cluster inside the block; yields the Client.

        with joblib_on_cluster(scatter=[reference]) as client:
            Parallel(n_jobs=-1, batch_size=16, pre_dispatch="3*n_jobs")(delayed(f)(x, reference) for x in xs)

    `scatter` objects are sent to every worker once, not once per task.
    """
    import joblib

    with connect(inventory) as client, joblib.parallel_backend("dask", scatter=scatter, **backend_kwargs), \
            warnings.catch_warnings():
        # scikit-learn pickles the caller's warning filters into every task; a filter naming a class the workers
        # cannot import (Jupyter always has IPython's) makes the scheduler drop the task graph and fit() hang.
        warnings.filters[:] = [f for f in warnings.filters if getattr(f[2], "__module__", "") == "builtins"]
        yield client
