"""Code that runs inside Dask workers (pickled by value: stdlib and distributed only)."""
