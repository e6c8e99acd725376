"""homecluster: turn the computers of a household into one Dask cluster, from one YAML inventory.

Layers, pure first: inventory/ (schema, loader) -> core/ (spec, plan) -> shell/ (quoting per dialect);
backends/ (how a process is kept running on a host: process.py + its supervisor), transport/ (local, ssh,
group, replay), scheduler.py (every connection to the scheduler), packages/ (lock, wheelhouse, facts,
additions), ops/ (up, down, status, setup, doctor, install-pkg, upload), plugins/ (code run inside workers),
api.py (notebooks) and cli/ (arguments, rendering).
"""

__version__ = "0.1.0"


def __getattr__(name: str):
    # `from homecluster import connect` without making the CLI import distributed at start-up.
    if name in ("connect", "scheduler_address", "joblib_on_cluster"):
        from homecluster import api
        return getattr(api, name)
    raise AttributeError(name)
