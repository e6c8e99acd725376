"""The household inventory: its schema and loader (loader.py, errors located by file and line) and the
`environment:` section (environment.py)."""

from homecluster.inventory.loader import (CLUSTER_KEYS, DEFAULT_INVENTORY, HOST_KEYS, ClusterSettings, Host,
                                          Inventory, PortRange, inventory_path, load, parse)

__all__ = ["CLUSTER_KEYS", "DEFAULT_INVENTORY", "HOST_KEYS", "ClusterSettings", "Host", "Inventory", "PortRange",
           "inventory_path", "load", "parse"]
