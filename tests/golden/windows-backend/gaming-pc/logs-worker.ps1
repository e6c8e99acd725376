# homecluster logs: the last 80 lines of the worker log
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'  # progress records would reach stderr as CLIXML
try { [Console]::OutputEncoding = [System.Text.Encoding]::UTF8 } catch { }
function Write-Line([string]$Line) { [Console]::Out.WriteLine($Line) }
$UserHome = [Environment]::GetFolderPath('UserProfile')
$D = ($UserHome + '\.homecluster\home\gaming-pc')
$Log = ($UserHome + '\.homecluster\home\gaming-pc\worker.log')
if (-not (Test-Path -LiteralPath $Log)) { Write-Line ('hc-error no log at ' + $Log + ' yet'); exit 1 }
Get-Content -LiteralPath $Log -Tail 80 -Encoding UTF8 | ForEach-Object { Write-Line $_ }