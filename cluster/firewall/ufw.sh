#!/bin/sh
# homecluster: ufw rules for host {{host}} of cluster {{cluster}}, rendered from the port plan.
# Run as root on a host where ufw is active: sh ufw.sh. ufw denies incoming connections by default, so these
# rules open exactly the plan's ports, TCP, from the household's networks only. Running it again changes
# nothing (ufw skips a rule it has already).
#
{{plan}}
set -e
{{commands}}
ufw status numbered

# Undo:
{{undo}}
