# Step: nmap and nbtscan from lab/cache/ (pinned SHA-256; no internet needed), at the paths the
# atomics' input arguments default to.
. (Join-Path $PSScriptRoot 'common.ps1')
if (-not (Test-Path 'C:\Program Files (x86)\Nmap\nmap.exe')) {
    $setup = Get-CachedFile 'nmap-setup.exe'
    Write-Step 'installing nmap (silent)'
    Start-Process -FilePath $setup -ArgumentList '/S' -Wait
}
$payloads = 'C:\AtomicRedTeam\ExternalPayloads'
New-Item -ItemType Directory -Force -Path $payloads | Out-Null
if (-not (Test-Path (Join-Path $payloads 'nbtscan.exe'))) {
    Copy-Item -Path (Get-CachedFile 'nbtscan.exe') -Destination (Join-Path $payloads 'nbtscan.exe')
}
Write-Step 'tools present: nmap, nbtscan'
