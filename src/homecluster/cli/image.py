"""`homecluster image build [--base IMAGE]`: the cluster's dask image on this machine's Docker engine
(images/build.py), its progress on stderr, what was built (or that nothing changed) on stdout.
`homecluster image push [HOST...]`: bring it to the docker hosts now (ops/image.py), as `up` does."""

from __future__ import annotations

import argparse
import time

from homecluster.inventory import Inventory


def add_parser(sub, common: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Register `image build` on the subcommands `sub` (with the `common` options)."""
    im = sub.add_parser("image", parents=[common], help="the cluster's dask image for docker hosts")
    isub = im.add_subparsers(dest="image_command", metavar="COMMAND", required=True)
    b = isub.add_parser("build", parents=[common], help="build the image on this machine's Docker engine "
                        "(DOCKER_HOST honoured) from the cluster's lock and wheelhouse: no registry, no network")
    b.add_argument("--base", metavar="IMAGE", default=None,
                   help="a local image with the environment's Python (default: python:X.Y-slim)")
    b.set_defaults(func=cmd_image)
    p = isub.add_parser("push", parents=[common], help="bring the image to the docker hosts that lack that exact "
                        "image id (docker save | ssh HOST docker load), hosts in parallel")
    p.add_argument("hosts", nargs="*", metavar="HOST", help="docker hosts from the inventory (default: all)")
    p.set_defaults(func=cmd_image)
    return im


def cmd_image(inv: Inventory, args: argparse.Namespace) -> int:
    from homecluster.cli.main import Progress  # (main registers this module's parser)
    from homecluster.images import build, store

    if args.image_command == "push":
        return _push(inv, args.hosts, Progress())

    before = store.built(inv.cluster.name)
    progress = Progress()
    t0 = time.monotonic()
    img = build.build(inv, args.base, progress)
    progress.done()
    print(built_text(img, unchanged=img == before, seconds=time.monotonic() - t0))
    return 0


def built_text(img, unchanged: bool, seconds: float) -> str:
    """What `image build` says on stdout."""
    head = "nothing changed: the image is built already" if unchanged else f"built in {seconds:.0f} s"
    return "\n".join([
        f"{img.tag}  ({head})",
        f"  id      {img.id}",
        f"  size    {img.size / 1e6:.0f} MB",
        f"  python  {img.python}, dask in /opt/homecluster (lock {img.env})",
        f"  base    {img.base}",
    ])


def _push(inv: Inventory, names: list[str], progress) -> int:
    import sys

    from homecluster.ops.image import push

    hosts = inv.select(names) if names else [h for h in inv.hosts.values() if h.backend == "docker"]
    if not hosts:
        print(f"error: {inv.path} has no docker host (backend: docker). Fix: set backend: docker for a host",
              file=sys.stderr)
        return 2
    results = push(inv, hosts, progress)
    progress.done()
    for name, r in results.items():
        print(f"{name}: {r.value}" if r.ok else f"{name}: FAILED")
        if not r.ok:
            print(f"error: {r.error}", file=sys.stderr)
    return 0 if all(r.ok for r in results.values()) else 1
