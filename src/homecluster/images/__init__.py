"""The dask image of a cluster: built once on this machine's Docker engine (build.py), recorded per cluster on
this machine (store.py), brought to docker hosts without a registry (ship.py)."""
