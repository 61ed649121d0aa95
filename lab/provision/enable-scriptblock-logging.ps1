# Step: PowerShell script block logging (Microsoft-Windows-PowerShell/Operational 4104).
. (Join-Path $PSScriptRoot 'common.ps1')
$key = 'HKLM:\SOFTWARE\Policies\Microsoft\Windows\PowerShell\ScriptBlockLogging'
New-Item -Path $key -Force | Out-Null
Set-ItemProperty -Path $key -Name 'EnableScriptBlockLogging' -Value 1 -Type DWord
Write-Step 'EnableScriptBlockLogging=1'
