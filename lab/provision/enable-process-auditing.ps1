# Step: Security 4688 process creation auditing, with command lines.
. (Join-Path $PSScriptRoot 'common.ps1')
Write-Step 'auditpol: Process Creation success+failure'
auditpol.exe /set /subcategory:"Process Creation" /success:enable /failure:enable | Out-Host
auditpol.exe /set /subcategory:"Process Termination" /success:enable | Out-Host
$key = 'HKLM:\Software\Microsoft\Windows\CurrentVersion\Policies\System\Audit'
New-Item -Path $key -Force | Out-Null
Set-ItemProperty -Path $key -Name 'ProcessCreationIncludeCmdLine_Enabled' -Value 1 -Type DWord
Write-Step 'ProcessCreationIncludeCmdLine_Enabled=1'
