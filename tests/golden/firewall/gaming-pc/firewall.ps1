#Requires -RunAsAdministrator
# homecluster: Windows Defender Firewall rules for host gaming-pc of cluster home, rendered from the port plan.
# Run in an administrator PowerShell: powershell -ExecutionPolicy Bypass -File firewall.ps1
# Inbound TCP to the plan's ports, from the household's networks only, on the Private profile. Running it again
# replaces this cluster's rules (the group below) and nothing else. Undo: remove-firewall.ps1.
#
# The port plan of gaming-pc (homecluster ports); opened to 192.168.1.0/24:
#   worker 9000:9099: TCP, for the scheduler, workers, clients
#   nanny 9100:9199: TCP, for the scheduler
#   not opened: worker http on 127.0.0.1 (any port), health and metrics, on the host itself: loopback only
$ErrorActionPreference = 'Stop'
$Group = 'homecluster home'

Get-NetFirewallRule -Group $Group -ErrorAction SilentlyContinue | Remove-NetFirewallRule
New-NetFirewallRule -DisplayName 'homecluster home: worker 9000-9099' -Group $Group -Description 'dask worker, for the scheduler, workers, clients' -Direction Inbound -Protocol TCP -LocalPort '9000-9099' -RemoteAddress '192.168.1.0/24' -Profile Private -Action Allow | Out-Null
New-NetFirewallRule -DisplayName 'homecluster home: nanny 9100-9199' -Group $Group -Description 'dask nanny, for the scheduler' -Direction Inbound -Protocol TCP -LocalPort '9100-9199' -RemoteAddress '192.168.1.0/24' -Profile Private -Action Allow | Out-Null

$made = @(Get-NetFirewallRule -Group $Group -ErrorAction SilentlyContinue)
$made | Format-Table -AutoSize -Property 'DisplayName', 'Enabled', 'Profile', 'Direction', 'Action'

# The rules hold on the Private profile only: a network Windows calls Public gets none of them.
$public = @(Get-NetConnectionProfile | Where-Object { $_.NetworkCategory -eq 'Public' })
foreach ($p in $public) {
    Write-Warning ("network '" + $p.Name + "' is Public: these rules do not apply there. Fix: " +
        "Set-NetConnectionProfile -InterfaceIndex " + $p.InterfaceIndex + " -NetworkCategory Private")
}
