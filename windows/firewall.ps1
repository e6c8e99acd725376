#Requires -RunAsAdministrator
# homecluster: Windows Defender Firewall rules for host {{host}} of cluster {{cluster}}, rendered from the port plan.
# Run in an administrator PowerShell: powershell -ExecutionPolicy Bypass -File firewall.ps1
# Inbound TCP to the plan's ports, from the household's networks only, on the Private profile. Running it again
# replaces this cluster's rules (the group below) and nothing else. Undo: remove-firewall.ps1.
#
{{plan}}
$ErrorActionPreference = 'Stop'
$Group = '{{group}}'

Get-NetFirewallRule -Group $Group -ErrorAction SilentlyContinue | Remove-NetFirewallRule
{{rules}}

$made = @(Get-NetFirewallRule -Group $Group -ErrorAction SilentlyContinue)
$made | Format-Table -AutoSize -Property 'DisplayName', 'Enabled', 'Profile', 'Direction', 'Action'

# The rules hold on the Private profile only: a network Windows calls Public gets none of them.
$public = @(Get-NetConnectionProfile | Where-Object { $_.NetworkCategory -eq 'Public' })
foreach ($p in $public) {
    Write-Warning ("network '" + $p.Name + "' is Public: these rules do not apply there. Fix: " +
        "Set-NetConnectionProfile -InterfaceIndex " + $p.InterfaceIndex + " -NetworkCategory Private")
}
