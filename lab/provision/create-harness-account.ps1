# Step: a dedicated, non-default local account for the harness (member of Administrators and
# Event Log Readers). The password comes from a one-shot file that `atomiclab lab up` drops into the
# synced lab/out/ folder; it is read into a SecureString and the file is deleted at once. It never
# appears in script text or on a command line, so 4104/4688/Sysmon never record it.
. (Join-Path $PSScriptRoot 'common.ps1')
$user = $env:ATOMICLAB_HARNESS_USER
$passwordFile = $env:ATOMICLAB_HARNESS_PASSWORD_FILE
if (-not (Test-Path $passwordFile)) {
    throw "no harness password file at ${passwordFile}: provision with 'atomiclab lab up' (export ATOMICLAB_HARNESS_PASSWORD first)"
}
try {
    $secure = Get-Content -Raw -Path $passwordFile | ForEach-Object { ConvertTo-SecureString $_.TrimEnd("`r", "`n") -AsPlainText -Force }
} finally {
    Remove-Item -Force -Path $passwordFile
}
if (-not (Get-LocalUser -Name $user -ErrorAction SilentlyContinue)) {
    Write-Step "creating local account $user"
    New-LocalUser -Name $user -Password $secure -PasswordNeverExpires -Description 'atomiclab harness' | Out-Null
} else {
    Set-LocalUser -Name $user -Password $secure
}
foreach ($group in 'Administrators', 'Event Log Readers', 'Remote Management Users') {
    if (-not (Get-LocalGroupMember -Group $group -Member $user -ErrorAction SilentlyContinue)) {
        Add-LocalGroupMember -Group $group -Member $user
    }
}
Write-Step "account $user ready"
