# homecluster wheels: the wheels already on this host
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'  # progress records would reach stderr as CLIXML
try { [Console]::OutputEncoding = [System.Text.Encoding]::UTF8 } catch { }
function Write-Line([string]$Line) { [Console]::Out.WriteLine($Line) }
$UserHome = [Environment]::GetFolderPath('UserProfile')
$D = ($UserHome + '\.homecluster\home\gaming-pc')
$W = Join-Path $D 'wheels'
New-Item -ItemType Directory -Force -Path $W | Out-Null
Get-ChildItem -LiteralPath $W -Filter '*.whl' -File | ForEach-Object { Write-Line $_.Name }