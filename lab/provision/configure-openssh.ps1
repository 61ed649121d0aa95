# Step: OpenSSH server, with its host key recorded to lab/out/known_hosts for RejectPolicy checks.
. (Join-Path $PSScriptRoot 'common.ps1')
$cap = Get-WindowsCapability -Online -Name 'OpenSSH.Server*' | Select-Object -First 1
if ($cap.State -ne 'Installed') {
    Write-Step 'installing OpenSSH.Server'
    Add-WindowsCapability -Online -Name $cap.Name | Out-Null
}
Set-Service -Name sshd -StartupType Automatic
Start-Service sshd
$pub = Get-Content 'C:\ProgramData\ssh\ssh_host_ed25519_key.pub'
$parts = $pub -split ' '
Set-Content -Path (Join-Path $OutDir "$env:COMPUTERNAME-known_hosts") -Value "$($env:ATOMICLAB_HOST_IP) $($parts[0]) $($parts[1])"
Write-Step "sshd running; host key recorded to lab/out/$env:COMPUTERNAME-known_hosts"
