# Step (run by name, last): take back what the Vagrant box opened for provisioning. Boxes ship WinRM
# with Basic authentication and unencrypted traffic allowed on the HTTP listener (5985); after
# provisioning neither is needed: Vagrant's own transport is Negotiate with message encryption
# (Vagrantfile: winrm.transport = :negotiate) and the harness uses HTTPS (5986).
# Settings: WSMan:\localhost\Service\Auth\Basic and \Service\AllowUnencrypted, the same as
# `winrm set winrm/config/service/auth @{Basic="false"}` (Microsoft Learn, "Installation and
# configuration for Windows Remote Management"). The built-in HTTP rules WINRM-HTTP-In-TCP(-PUBLIC)
# are narrowed to the harness's addresses like atomiclab's HTTPS rule.
. (Join-Path $PSScriptRoot 'common.ps1')
$harness = @(($env:ATOMICLAB_HARNESS_ADDRESSES -split ',') | ForEach-Object { $_.Trim() } | Where-Object { $_ })
if ($harness.Count -eq 0) { throw 'ATOMICLAB_HARNESS_ADDRESSES is empty: refusing to leave WinRM HTTP open to any address' }
foreach ($side in 'Service', 'Client') {
    Set-Item -Path "WSMan:\localhost\$side\Auth\Basic" -Value $false
    Set-Item -Path "WSMan:\localhost\$side\AllowUnencrypted" -Value $false
}
Get-NetFirewallRule -Name 'WINRM-HTTP-In-TCP*' -ErrorAction SilentlyContinue | Set-NetFirewallRule -RemoteAddress $harness
$basic = (Get-Item WSMan:\localhost\Service\Auth\Basic).Value
$plain = (Get-Item WSMan:\localhost\Service\AllowUnencrypted).Value
if ($basic -ne 'false' -or $plain -ne 'false') { throw "WinRM lockdown did not apply (Basic=$basic, AllowUnencrypted=$plain)" }
Write-Step "WinRM: Basic and unencrypted traffic off; HTTP reachable from $($harness -join ', ') only"
