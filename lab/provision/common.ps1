# Shared helpers for atomiclab provisioning: every step logs to C:\atomiclab-lab\out\provision.log and
# to the console, stops on the first error, and is safe to run again (idempotent).
Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'
$LabDir = if ($env:ATOMICLAB_LAB_DIR) { $env:ATOMICLAB_LAB_DIR } else { 'C:\atomiclab-lab' }
$OutDir = Join-Path $LabDir 'out'
$CacheDir = Join-Path $LabDir 'cache'
New-Item -ItemType Directory -Force -Path $OutDir | Out-Null

function Write-Step([string]$Message) {
    $line = '{0:o} [{1}] {2}' -f (Get-Date).ToUniversalTime(), $env:COMPUTERNAME, $Message
    Write-Host $line
    Add-Content -Path (Join-Path $OutDir 'provision.log') -Value $line
}

function Get-CachedFile([string]$Name) {
    # Files come only from lab/cache/, verified against the pinned SHA-256 in lab/cache/cache.lock;
    # provisioning never downloads anything.
    $lock = Join-Path $CacheDir 'cache.lock'
    $entry = Get-Content $lock | Where-Object { $_ -match "^\s*$([regex]::Escape($Name))\s+" } | Select-Object -First 1
    if (-not $entry) { throw "lab/cache/cache.lock has no pin for $Name: run lab/fetch-cache.sh on the host first" }
    $expected = ($entry -split '\s+')[1].ToLowerInvariant()
    if ($expected -notmatch '^[0-9a-f]{64}$') { throw "lab/cache/cache.lock does not pin $Name yet: verify it, run lab/fetch-cache.sh --pin, then provision again" }
    $path = Join-Path $CacheDir $Name
    if (-not (Test-Path $path)) { throw "$path is missing: run lab/fetch-cache.sh on the host first" }
    $actual = (Get-FileHash -Algorithm SHA256 -Path $path).Hash.ToLowerInvariant()
    if ($actual -ne $expected) { throw "$Name has SHA-256 $actual but cache.lock pins $expected: refusing to install" }
    return $path
}
