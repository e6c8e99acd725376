"""Firewall rules from the port plan: rendered per host OS (rules.py) from the templates in cluster/firewall/
and windows/ (through services/templates.py). Applying them over SSH comes later."""

from homecluster.firewall.rules import (firewalld, macos_notes, nftables, render_all, render_host, ufw, warnings,
                                        windows, windows_remove)

__all__ = ["firewalld", "macos_notes", "nftables", "render_all", "render_host", "ufw", "warnings", "windows",
           "windows_remove"]
