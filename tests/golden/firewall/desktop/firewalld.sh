#!/bin/sh
# homecluster: firewalld rich rules for host desktop of cluster home, rendered from the port plan.
# Run as root on a host where firewalld runs: sh firewalld.sh. The rules go to the default zone
# (firewall-cmd --get-default-zone), permanently, then firewalld reloads. Running it again changes nothing
# (firewalld warns ALREADY_ENABLED and goes on).
#
# The port plan of desktop (homecluster ports); opened to 192.168.1.0/24:
#   scheduler 8786: TCP, for workers and this machine
#   not opened: dashboard on 127.0.0.1 (port 8787), homecluster dashboard (SSH tunnel): loopback only
set -e
firewall-cmd --permanent --add-rich-rule='rule family="ipv4" source address="192.168.1.0/24" port port="8786" protocol="tcp" accept'
firewall-cmd --reload
firewall-cmd --list-rich-rules

# Undo:
# firewall-cmd --permanent --remove-rich-rule='rule family="ipv4" source address="192.168.1.0/24" port port="8786" protocol="tcp" accept'
# firewall-cmd --reload
