"""The data-scientist examples (examples/) against the simulated household, on one cluster for the module.

The cluster: a scheduler on desktop, 1 worker on study, 2 on attic (1 thread each), all in managed
environments with this machine's scikit-learn, so the examples' results can be compared with local runs.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import threading
import time
import warnings
from collections import Counter
from contextlib import contextmanager
from importlib.metadata import version
from pathlib import Path

import nbformat
import pytest
import yaml
from dask.base import tokenize
from distributed import Client, get_task_stream
from nbclient import NotebookClient

from homecluster import connect

from conftest import dask_processes, hc, household_inventory

pytestmark = pytest.mark.household
EXAMPLES = Path(__file__).parent.parent / "examples"
PORT = 8830  # this module's scheduler port (dashboard PORT + 1); the examples tests own 8830-8849
WORKERS = {"study": 1, "attic": 2}


def load_example(name: str):
    """Import examples/<name>.py the way `python examples/<name>.py` runs it: a module the workers cannot import,
    so cloudpickle sends its functions by value. (Registered in sys.modules, its functions would be pickled by
    reference and the workers would fail to import the module: `homecluster upload` is the way for those.)"""
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def cluster(household, tmp_path_factory, wheel_cache):
    """Set up and start the examples' cluster once for the module; bring it down afterwards and make sure no dask
    process is left on any host (what the `cleanup` fixture does per test)."""
    tmp = tmp_path_factory.mktemp("examples")
    inv = household_inventory(household, tmp / "inventory.yaml", "examples", workers=WORKERS,
                              cluster_extra={"scheduler_port": PORT, "dashboard_port": PORT + 1})
    data = yaml.safe_load(inv.read_text())
    del data["defaults"]["python"]  # every host gets the managed environment
    # scikit-learn for the workers; scipy and joblib pinned too, so that the fits are bit-for-bit those of
    # this machine and joblib's dask batches unpickle with the same joblib. No IPython on the workers: the
    # notebook's IPython warning filters are kept from the tasks by joblib_on_cluster (examples/README.md).
    data["environment"] = {"python": f"{sys.version_info.major}.{sys.version_info.minor}",
                           "packages": [f"{p}=={version(p)}" for p in ("scikit-learn", "scipy", "joblib")]}
    inv.write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HOMECLUSTER_CACHE", str(wheel_cache))
        try:
            start = time.perf_counter()
            setup = hc("setup", inv=inv, timeout=600)
            assert setup.returncode == 0, setup.stdout + setup.stderr
            up = hc("up", inv=inv)
            assert up.returncode == 0, up.stdout + up.stderr
            print(f"examples cluster: setup + up in {time.perf_counter() - start:.1f} s")
            yield inv
        finally:
            down = hc("down", inv=inv)
            left = dask_processes(household)
            for _, pid, _ in left:
                subprocess.run(["kill", "-9", str(pid)], check=False)
            assert down.returncode == 0, down.stdout + down.stderr
            assert left == [], "down left processes behind"


@pytest.fixture
def client(cluster, household):
    with connect(str(cluster)) as c:
        c.wait_for_workers(sum(WORKERS.values()), timeout=30)
        yield c


def joblib_batch_sizes(n: int, batch_size: int, n_jobs: int, pre_dispatch: int) -> list[int]:
    """The batches joblib.Parallel cuts n calls into for a fixed batch_size (joblib/parallel.py,
    Parallel.dispatch_one_batch): it slices batch_size * n_jobs calls at a time and splits each slice into
    n_jobs batches. The first slice is the pre_dispatch-long head (pre_dispatch counts calls, not batches), so
    its batches hold pre_dispatch // n_jobs calls; the last, short slice of the input is split into batches of
    len // (10 * n_jobs) calls (at least 1). Valid while pre_dispatch <= batch_size * n_jobs (no race between
    the head and the callbacks)."""
    assert pre_dispatch <= batch_size * n_jobs
    big = batch_size * n_jobs
    sizes: list[int] = []

    def split(length: int, per_batch: int) -> None:
        per_batch = max(1, per_batch)
        sizes.extend(min(per_batch, length - i) for i in range(0, length, per_batch))

    head = min(n, pre_dispatch)
    split(head, head // n_jobs)
    rest = n - head
    while rest:
        chunk = min(big, rest)
        split(chunk, chunk // n_jobs if chunk == big else chunk // (10 * n_jobs))
        rest -= chunk
    return sorted(sizes)


def within(seconds: float, fn, *args, **kwargs):
    """fn(*args, **kwargs), failing the test after `seconds` instead of hanging the run: a joblib batch the
    scheduler cannot unpickle never completes and never errs on the client."""
    box: dict = {}

    def run():
        try:
            box["value"] = fn(*args, **kwargs)
        except BaseException as e:  # noqa: BLE001 - re-raised in the test's thread
            box["error"] = e
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        pytest.fail(f"{getattr(fn, '__qualname__', fn)} did not finish in {seconds} s (see the scheduler log)")
    if "error" in box:
        raise box["error"]
    return box["value"]


@contextmanager
def plain_warning_filters():
    """scikit-learn (1.9 here) pickles the caller's warnings.filters into every joblib task. Under pytest they name
    pytest's own warning classes, which the scheduler and workers cannot unpickle (no pytest there): the
    scheduler logs "No module named 'pytest'" and the search hangs. A user's notebook has only builtin ones."""
    with warnings.catch_warnings():
        warnings.resetwarnings()
        warnings.simplefilter("default")
        yield


def host_of(worker_address: str) -> str:
    return worker_address.split("://")[1].rsplit(":", 1)[0]


def received_bytes(client: Client) -> dict[str, int]:
    """Bytes each worker host has received so far, all interfaces (its network namespace's /proc/net/dev)."""
    def rx():
        lines = open("/proc/net/dev").read().splitlines()[2:]
        return sum(int(line.split(":", 1)[1].split()[0]) for line in lines)
    return {host_of(w): n for w, n in client.run(rx).items()}


def test_grid_search_on_the_cluster_equals_the_local_search(cluster, client):
    grid_search = load_example("grid_search")
    start = time.perf_counter()
    expected = grid_search.local()
    local_s = time.perf_counter() - start
    with get_task_stream(client) as ts, plain_warning_filters():
        best_params, best_score = within(120, grid_search.main, str(cluster))
    cluster_s = time.perf_counter() - start - local_s
    assert best_params == expected[0] and best_score == expected[1], ((best_params, best_score), expected)
    # joblib's tasks are batches of fits, [mixed_]batch_of__fit_and_score_<calls>_calls-<uuid> ("mixed": each
    # call is wrapped in its own scikit-learn _FuncWrapper object)
    batches = [re.match(r"(?:mixed_)?batch_of__fit_and_score_(\d+)_calls-", t["key"]) for t in ts.data]
    fits = [t for t, m in zip(ts.data, batches) if m]
    assert sum(int(m.group(1)) for m in batches if m) == 20 * 3  # 20 values of C x 3 folds
    workers = Counter(t["worker"] for t in fits)
    assert len(workers) > 1, workers
    print(f"grid search: local {local_s:.1f} s, cluster {cluster_s:.1f} s, {len(fits)} tasks on {dict(workers)}")


def test_brute_force_scatters_once_per_worker_and_honours_batch_size(cluster, client):
    brute_force = load_example("brute_force")
    n, batch_size = 300, 16
    reference = brute_force.make_reference()
    key = f"ndarray-{tokenize(reference)}"  # the key client.scatter(hash=True) gives the reference
    n_jobs = sum(client.ncores().values())
    workers = list(client.scheduler_info()["workers"])
    t0 = time.time()
    before = received_bytes(client)
    with get_task_stream(client) as ts:
        result = within(120, brute_force.main, str(cluster), n_candidates=n, batch_size=batch_size)
    after = received_bytes(client)

    assert (result["frequency"], result["phase"]) == (brute_force.TRUE_FREQUENCY, brute_force.TRUE_PHASE)
    assert result["n_candidates"] == n

    # batch_size: one dask task per joblib batch, named batch_of_cost_<calls>_calls-<uuid>
    tasks = [t for t in ts.data if t["key"].startswith("batch_of_cost_")]
    sizes = sorted(int(re.match(r"batch_of_cost_(\d+)_calls-", t["key"]).group(1)) for t in tasks)
    assert sum(sizes) == n and max(sizes) == batch_size
    assert sizes == joblib_batch_sizes(n, batch_size, n_jobs, pre_dispatch=3 * n_jobs), sizes
    assert sizes.count(batch_size) == (n - 3 * n_jobs) // (batch_size * n_jobs) * n_jobs

    # scatter: each worker's own records show the reference arriving once (the broadcast when the block
    # started; on a busy machine a worker may fetch it once more from a peer), never once per task.
    tasks_per_worker = Counter(t["worker"] for t in tasks)
    assert set(tasks_per_worker) == set(workers) and min(tasks_per_worker.values()) > 4, tasks_per_worker
    scattered = client.run(lambda dask_worker: sum(1 for entry in dask_worker.state.log
                                                   if entry[0] == key and entry[1] == "receive-from-scatter"
                                                   and entry[-1] >= t0))
    fetched = client.run(lambda dask_worker: sum(1 for e in dask_worker.transfer_incoming_log
                                                 if key in e["keys"] and e["start"] >= t0))
    copies = {w: scattered[w] + fetched[w] for w in workers}
    assert all(scattered[w] == 1 for w in workers), scattered
    assert all(1 <= copies[w] <= 2 and 2 * copies[w] < tasks_per_worker[w] for w in workers), (copies,
                                                                                             tasks_per_worker)

    # ...and on the wire: each host received about one copy per worker (as counted above), not one per task.
    nbytes = reference.nbytes
    per_host_tasks = Counter(host_of(w) for w in tasks_per_worker.elements())
    per_host_copies = Counter()
    for w in workers:
        per_host_copies[host_of(w)] += copies[w]
    for host, n_copies in per_host_copies.items():
        received = after[host] - before[host]
        assert 0.5 * n_copies * nbytes <= received < (n_copies + 0.5) * nbytes, (host, received, n_copies)
        assert per_host_tasks[host] > 2 * n_copies  # once per task would be far more bytes than that
    print(f"brute force: {n} candidates in {len(tasks)} tasks (sizes {dict(Counter(sizes))}), "
          f"{result['seconds']} s; received MB per host "
          f"{ {h: round((after[h] - before[h]) / 1e6, 1) for h in per_host_copies} }")


def test_map_like_pool_returns_the_right_values(cluster, client):
    map_like_pool = load_example("map_like_pool")
    result = within(60, map_like_pool.main, str(cluster), n=200)
    assert result["steps"] == [map_like_pool.collatz_steps(x) for x in range(1, 201)]
    assert result["steps"][:9] == [0, 1, 7, 2, 5, 8, 16, 3, 19]
    assert result["primes"] == [p for p in range(1, 201) if all(p % d for d in range(2, p))][1:]  # drop 1
    assert len(result["primes"]) == 46
    assert result["a_worker_host"] in WORKERS  # ran on a worker host, not here


def test_examples_run_as_scripts(cluster, household):
    p = subprocess.run([sys.executable, str(EXAMPLES / "map_like_pool.py"), "--inventory", str(cluster), "-n", "50"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "1..50: 27 takes the most Collatz steps (111); 15 primes; one task ran on " in p.stdout
    # homecluster run, with the inventory found through $HOMECLUSTER_INVENTORY
    env = {**os.environ, "HOMECLUSTER_INVENTORY": str(cluster)}
    p = subprocess.run([sys.executable, "-m", "homecluster", "run", str(EXAMPLES / "brute_force.py"),
                        "--candidates", "100", "--batch-size", "8"], capture_output=True, text=True, timeout=120,
                       env=env)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "best of 100 candidates: frequency 3.3, phase 1.2" in p.stdout


def test_notebook_runs_headless(cluster, household, tmp_path, monkeypatch):
    nb = nbformat.read(EXAMPLES / "notebook.ipynb", as_version=4)
    monkeypatch.setenv("HOMECLUSTER_INVENTORY", str(cluster))  # the kernel inherits it
    # run in an empty folder: the inventory can only come from $HOMECLUSTER_INVENTORY
    NotebookClient(nb, kernel_name="python3", timeout=300, resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream" and o.name == "stdout")
    assert "3 workers, 3 threads" in text
    assert f"dashboard: http://{household.host('desktop').address}:{PORT + 1}/status" in text
    assert f"sum of squares: {sum(x * x for x in range(100))}" in text
    params, score = load_example("grid_search").local()
    assert f"best C {params['C']:.6g}, mean accuracy {score:.6f}" in text, text
