#Requires -RunAsAdministrator
# homecluster: remove the Windows Defender Firewall rules of cluster {{cluster}} from host {{host}} (the rules
# firewall.ps1 made, found by their group). Run in an administrator PowerShell:
# powershell -ExecutionPolicy Bypass -File remove-firewall.ps1
$ErrorActionPreference = 'Stop'
$Group = '{{group}}'

$rules = @(Get-NetFirewallRule -Group $Group -ErrorAction SilentlyContinue)
foreach ($r in $rules) {
    Write-Output ("removing " + $r.DisplayName)
}
$rules | Remove-NetFirewallRule
Write-Output ("removed " + $rules.Count + " rule(s) of group '" + $Group + "'")
