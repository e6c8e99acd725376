# homecluster logs: the last 80 lines of the scheduler log
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'  # progress records would reach stderr as CLIXML
try { [Console]::OutputEncoding = [System.Text.Encoding]::UTF8 } catch { }
function Write-Line([string]$Line) { [Console]::Out.WriteLine($Line) }
$UserHome = [Environment]::GetFolderPath('UserProfile')
$D = 'D:\Ann''s Dask Runs\home\tower'
$Log = 'D:\Ann''s Dask Runs\home\tower\scheduler.log'
if (-not (Test-Path -LiteralPath $Log)) { Write-Line ('hc-error no log at ' + $Log + ' yet'); exit 1 }
Get-Content -LiteralPath $Log -Tail 80 -Encoding UTF8 | ForEach-Object { Write-Line $_ }