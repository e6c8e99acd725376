# homecluster sync: the environment exactly as the lock (3 packages), offline
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'  # progress records would reach stderr as CLIXML
try { [Console]::OutputEncoding = [System.Text.Encoding]::UTF8 } catch { }
function Write-Line([string]$Line) { [Console]::Out.WriteLine($Line) }
$UserHome = [Environment]::GetFolderPath('UserProfile')
$D = ($UserHome + '\.homecluster\home\gaming-pc')
$E = ($UserHome + '\.homecluster\home\gaming-pc\env')
$env:PYTHONIOENCODING = 'utf-8'  # what python.exe prints, in the encoding [Console] reads
function Invoke-Native([string]$Exe, [string[]]$Arguments) {
    $ErrorActionPreference = 'Continue'
    try {
        $Lines = @(& $Exe @Arguments 2>&1 | ForEach-Object { [string]$_ })
        return @{ Code = $LASTEXITCODE; Lines = $Lines }
    } catch {
        return @{ Code = -1; Lines = @([string]$_.Exception.Message) }
    }
}
function Get-Tail($Result) {
    $Last = @($Result.Lines | Where-Object { $_.Trim() }) | Select-Object -Last 3
    return (($Last | ForEach-Object { $_.Trim() }) -join ' ') + ' (exit ' + $Result.Code + ')'
}
function Get-PythonArgument([string]$Code) {
    $Base64 = [Convert]::ToBase64String([System.Text.Encoding]::UTF8.GetBytes($Code))
    return "import base64; exec(base64.b64decode('" + $Base64 + "'))"
}
$env:UV_NO_PROGRESS = '1'
$env:UV_CACHE_DIR = Join-Path $D 'uv-cache'
$Uv = ($UserHome + '\.homecluster\home\gaming-pc\uv\uv.exe')
$Requirements = $E + '.requirements'
$Text = @'
dask==2026.8.0
distributed==2026.8.0
six==1.17.0
'@
[System.IO.File]::WriteAllText($Requirements, $Text + "`n")  # UTF-8 without a BOM
$R = Invoke-Native $Uv @('pip', 'sync', '--quiet', '--offline', '--no-index', '--find-links', (Join-Path $D 'wheels'), '--python', (Join-Path $E 'Scripts\python.exe'), $Requirements)
if ($R.Code -ne 0) { Write-Line ('hc-error installing the environment failed: ' + (Get-Tail $R)); exit 1 }
[System.IO.File]::WriteAllText((Join-Path $E 'homecluster-lock'), '6e126d17580f5355')
Write-Line 'hc-synced 6e126d17580f5355'