#!/bin/sh
# homecluster: ufw rules for host laptop of cluster home, rendered from the port plan.
# Run as root on a host where ufw is active: sh ufw.sh. ufw denies incoming connections by default, so these
# rules open exactly the plan's ports, TCP, from the household's networks only. Running it again changes
# nothing (ufw skips a rule it has already).
#
# The port plan of laptop (homecluster ports); opened to 192.168.1.0/24:
#   worker 9000:9099: TCP, for the scheduler, workers, clients
#   nanny 9100:9199: TCP, for the scheduler
#   not opened: worker http on 127.0.0.1 (any port), health and metrics, on the host itself: loopback only
set -e
ufw allow from 192.168.1.0/24 to any port 9000:9099 proto tcp comment 'homecluster home: worker'
ufw allow from 192.168.1.0/24 to any port 9100:9199 proto tcp comment 'homecluster home: nanny'
ufw status numbered

# Undo:
# ufw delete allow from 192.168.1.0/24 to any port 9000:9099 proto tcp
# ufw delete allow from 192.168.1.0/24 to any port 9100:9199 proto tcp
