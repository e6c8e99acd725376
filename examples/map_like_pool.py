"""From multiprocessing.Pool.map to the household cluster.

    with Pool() as pool:                                   # one machine
        results = pool.map(f, xs)

becomes either the dask way

    client = connect()
    results = client.gather(client.map(f, xs))             # every machine; order kept, like Pool.map

or the concurrent.futures way (the standard Executor interface, for code written against it)

    with client.get_executor() as executor:
        results = list(executor.map(f, xs))

Things that differ from Pool:
- client.map assumes pure functions: the same function and argument give the same key, so it runs once and
  the result is shared. For random numbers or side effects pass pure=False.
- Results stay on the workers until gathered; client.map(g, futures) chains work without a round trip.
- Exceptions come back when you gather, with the worker's traceback.

Run it (the cluster must be running):

    homecluster up
    python examples/map_like_pool.py                      # ./inventory.yaml or $HOMECLUSTER_INVENTORY
    python examples/map_like_pool.py --inventory ~/home.yaml
    homecluster run examples/map_like_pool.py             # same lookup; not -i (see examples/README.md)
"""

from __future__ import annotations

import argparse
import math
import socket

from homecluster import connect


def collatz_steps(n: int) -> int:
    """How many Collatz steps n needs to reach 1 (a stand-in for your own function)."""
    steps = 0
    while n != 1:
        n = 3 * n + 1 if n % 2 else n // 2
        steps += 1
    return steps


def is_prime(n: int) -> bool:
    return n >= 2 and all(n % d for d in range(2, math.isqrt(n) + 1))


def main(inventory: str | None = None, n: int = 200) -> dict:
    xs = list(range(1, n + 1))
    with connect(inventory) as client:
        # Pool.map(f, xs) -> client.map + client.gather
        futures = client.map(collatz_steps, xs)
        steps = client.gather(futures)

        # concurrent.futures: Executor.submit / Executor.map, as with ProcessPoolExecutor
        with client.get_executor() as executor:
            primes = [x for x, prime in zip(xs, executor.map(is_prime, xs)) if prime]
            host = executor.submit(socket.gethostname).result()
    return {"steps": steps, "primes": primes, "a_worker_host": host}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--inventory", help="inventory file (default: $HOMECLUSTER_INVENTORY, else ./inventory.yaml)")
    ap.add_argument("-n", type=int, default=200)
    args = ap.parse_args()
    result = main(args.inventory, args.n)
    longest = max(range(len(result["steps"])), key=result["steps"].__getitem__) + 1
    print(f"1..{args.n}: {longest} takes the most Collatz steps ({max(result['steps'])}); "
          f"{len(result['primes'])} primes; one task ran on {result['a_worker_host']}")
