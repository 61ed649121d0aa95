# Step: a WinRM HTTPS listener with a generated certificate, exported so the harness validates it.
. (Join-Path $PSScriptRoot 'common.ps1')
$ip = $env:ATOMICLAB_HOST_IP
$dns = $env:COMPUTERNAME
$cert = Get-ChildItem Cert:\LocalMachine\My | Where-Object { $_.FriendlyName -eq 'atomiclab-winrm' } | Select-Object -First 1
if (-not $cert) {
    Write-Step "creating the WinRM certificate for $dns / $ip"
    $cert = New-SelfSignedCertificate -CertStoreLocation Cert:\LocalMachine\My -FriendlyName 'atomiclab-winrm' `
        -DnsName $dns, 'localhost' -TextExtension @("2.5.29.17={text}IPAddress=$ip&DNS=$dns") -NotAfter (Get-Date).AddYears(2)
}
$listener = Get-ChildItem WSMan:\localhost\Listener | Where-Object { $_.Keys -contains 'Transport=HTTPS' }
if (-not $listener) {
    Write-Step 'creating the HTTPS listener on 5986'
    New-Item -Path WSMan:\localhost\Listener -Transport HTTPS -Address * -CertificateThumbPrint $cert.Thumbprint -Force | Out-Null
}
# Port 5986 is open to the harness's address(es) only, never to any address on the network.
$harness = @(($env:ATOMICLAB_HARNESS_ADDRESSES -split ',') | ForEach-Object { $_.Trim() } | Where-Object { $_ })
if ($harness.Count -eq 0) { throw 'ATOMICLAB_HARNESS_ADDRESSES is empty: the WinRM rule would have no allowed address' }
if (-not (Get-NetFirewallRule -Name 'atomiclab-winrm-https' -ErrorAction SilentlyContinue)) {
    New-NetFirewallRule -Name 'atomiclab-winrm-https' -DisplayName 'atomiclab WinRM HTTPS' -Protocol TCP -LocalPort 5986 `
        -RemoteAddress $harness -Action Allow | Out-Null
} else {
    Set-NetFirewallRule -Name 'atomiclab-winrm-https' -RemoteAddress $harness
}
Write-Step "WinRM HTTPS (5986) reachable from $($harness -join ', ') only"
Export-Certificate -Cert $cert -FilePath (Join-Path $OutDir "$dns-winrm.cer") -Type CERT | Out-Null
certutil.exe -encode (Join-Path $OutDir "$dns-winrm.cer") (Join-Path $OutDir "$dns-winrm.pem") | Out-Null
Write-Step "WinRM HTTPS ready; certificate exported to lab/out/$dns-winrm.pem (thumbprint $($cert.Thumbprint))"
