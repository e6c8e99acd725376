#!/bin/sh
# homecluster: firewalld rich rules for host {{host}} of cluster {{cluster}}, rendered from the port plan.
# Run as root on a host where firewalld runs: sh firewalld.sh. The rules go to the default zone
# (firewall-cmd --get-default-zone), permanently, then firewalld reloads. Running it again changes nothing
# (firewalld warns ALREADY_ENABLED and goes on).
#
{{plan}}
set -e
{{commands}}
firewall-cmd --list-rich-rules

# Undo:
{{undo}}
