# Step: Sysmon with the pinned sysmon-modular configuration (keeps EID 1, 3 and 11 for the T1046 tools).
. (Join-Path $PSScriptRoot 'common.ps1')
$zip = Get-CachedFile 'Sysmon.zip'
$config = Get-CachedFile 'sysmonconfig.xml'
$dest = 'C:\Windows\Sysmon64.exe'
if (-not (Test-Path $dest)) {
    Write-Step "installing Sysmon from $zip"
    $tmp = Join-Path $env:TEMP 'atomiclab-sysmon'
    Expand-Archive -Path $zip -DestinationPath $tmp -Force
    & (Join-Path $tmp 'Sysmon64.exe') -accepteula -i $config | Out-Host
} else {
    Write-Step 'Sysmon present: applying the pinned configuration'
    & $dest -c $config | Out-Host
}
$svc = Get-Service -Name Sysmon64 -ErrorAction Stop
if ($svc.Status -ne 'Running') { Start-Service Sysmon64 }
$hash = (Get-FileHash -Algorithm SHA256 -Path $config).Hash
Write-Step "Sysmon64 running; config SHA256=$hash"
