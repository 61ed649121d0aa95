# Step: a dedicated, non-default local account for the harness (member of Administrators and
# Event Log Readers), password from the host's ATOMICLAB_HARNESS_PASSWORD (never stored in the repo).
. (Join-Path $PSScriptRoot 'common.ps1')
$user = $env:ATOMICLAB_HARNESS_USER
if (-not $env:ATOMICLAB_HARNESS_PASSWORD) { throw 'ATOMICLAB_HARNESS_PASSWORD is empty: export it on the host before vagrant up' }
$secure = ConvertTo-SecureString $env:ATOMICLAB_HARNESS_PASSWORD -AsPlainText -Force
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
