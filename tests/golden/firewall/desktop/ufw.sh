#!/bin/sh
# homecluster: ufw rules for host desktop of cluster home, rendered from the port plan.
# Run as root on a host where ufw is active: sh ufw.sh. ufw denies incoming connections by default, so these
# rules open exactly the plan's ports, TCP, from the household's networks only. Running it again changes
# nothing (ufw skips a rule it has already).
#
# The port plan of desktop (homecluster ports); opened to 192.168.1.0/24:
#   scheduler 8786: TCP, for workers and this machine
#   not opened: dashboard on 127.0.0.1 (port 8787), homecluster dashboard (SSH tunnel): loopback only
set -e
ufw allow from 192.168.1.0/24 to any port 8786 proto tcp comment 'homecluster home: scheduler'
ufw status numbered

# Undo:
# ufw delete allow from 192.168.1.0/24 to any port 8786 proto tcp
