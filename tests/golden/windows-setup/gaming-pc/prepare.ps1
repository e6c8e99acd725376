# homecluster prepare: uv 0.13.9 from its wheel, and the environment from C:\Users\ann\AppData\Local\Programs\Python\Python311\python.exe
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
$Python = 'C:\Users\ann\AppData\Local\Programs\Python\Python311\python.exe'
$Uv = ($UserHome + '\.homecluster\home\gaming-pc\uv\uv.exe')
$Wheel = Join-Path (Join-Path $D 'wheels') 'uv-0.13.9-py3-none-win_amd64.whl'
$EnvPython = Join-Path $E 'Scripts\python.exe'
New-Item -ItemType Directory -Force -Path (Split-Path -Parent $Uv) | Out-Null
$Have = ''
if (Test-Path -LiteralPath $Uv) { $Have = [string]((Invoke-Native $Uv @('--version')).Lines | Select-Object -First 1) }
if (($Have -split ' ')[1] -ne '0.13.9') {
    # a wheel is a zip file: the host's Python takes uv.exe out (Expand-Archive takes only *.zip names)
    $R = Invoke-Native $Python @('-c', 'import sys, zipfile; z = zipfile.ZipFile(sys.argv[1]); n = next(x for x in z.namelist() if x.endswith(''.data/scripts/uv.exe'')); open(sys.argv[2], ''wb'').write(z.read(n))', $Wheel, $Uv)
    if ($R.Code -ne 0) { Write-Line ('hc-error unpacking uv failed: ' + (Get-Tail $R)); exit 1 }
}
$Ready = $false
if (Test-Path -LiteralPath $EnvPython) {
    $Ready = (Invoke-Native $EnvPython @('-c', 'import sys; sys.exit(0 if ''%d.%d'' % sys.version_info[:2] == ''3.11'' else 1)')).Code -eq 0
}
if (-not $Ready) {
    try {
        if (Test-Path -LiteralPath $E) { Remove-Item -LiteralPath $E -Recurse -Force }
    } catch {
        $Why = $_.Exception.Message
        $Fix = ' Fix: homecluster down, then homecluster setup again'
        Write-Line ('hc-error cannot replace ' + $E + ' (' + $Why + ').' + $Fix)
        exit 1
    }
    $R = Invoke-Native $Uv @('venv', '--quiet', '--python', $Python, $E)
    if ($R.Code -ne 0) { Write-Line ('hc-error creating the environment failed: ' + (Get-Tail $R)); exit 1 }
}
$Linked = Join-Path $E 'Scripts\uv.exe'
Remove-Item -LiteralPath $Linked -Force -ErrorAction SilentlyContinue
try { New-Item -ItemType HardLink -Path $Linked -Target $Uv | Out-Null } catch { Copy-Item -LiteralPath $Uv -Destination $Linked }
Write-Line 'hc-prepared'