"""homecluster: turn the computers of a household into one Dask cluster, from one YAML inventory.

Layers (pure first): inventory -> spec -> commands / plan / dry_run (text), then transport -> group ->
deploy (touches hosts), monitor (asks the scheduler), report (tables) and cli.
"""

__version__ = "0.1.0"


def __getattr__(name: str):
    # `from homecluster import connect` without making the CLI import distributed at start-up.
    if name in ("connect", "scheduler_address", "joblib_on_cluster"):
        from homecluster import api
        return getattr(api, name)
    raise AttributeError(name)
