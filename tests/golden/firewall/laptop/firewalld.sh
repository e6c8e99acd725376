#!/bin/sh
# homecluster: firewalld rich rules for host laptop of cluster home, rendered from the port plan.
# Run as root on a host where firewalld runs: sh firewalld.sh. The rules go to the default zone
# (firewall-cmd --get-default-zone), permanently, then firewalld reloads. Running it again changes nothing
# (firewalld warns ALREADY_ENABLED and goes on).
#
# The port plan of laptop (homecluster ports); opened to 192.168.1.0/24:
#   worker 9000:9099: TCP, for the scheduler, workers, clients
#   nanny 9100:9199: TCP, for the scheduler
#   not opened: worker http on 127.0.0.1 (any port), health and metrics, on the host itself: loopback only
set -e
firewall-cmd --permanent --add-rich-rule='rule family="ipv4" source address="192.168.1.0/24" port port="9000-9099" protocol="tcp" accept'
firewall-cmd --permanent --add-rich-rule='rule family="ipv4" source address="192.168.1.0/24" port port="9100-9199" protocol="tcp" accept'
firewall-cmd --reload
firewall-cmd --list-rich-rules

# Undo:
# firewall-cmd --permanent --remove-rich-rule='rule family="ipv4" source address="192.168.1.0/24" port port="9000-9099" protocol="tcp" accept'
# firewall-cmd --permanent --remove-rich-rule='rule family="ipv4" source address="192.168.1.0/24" port port="9100-9199" protocol="tcp" accept'
# firewall-cmd --reload
