# azd postdeploy: the function code is published now, so Event Grid can validate the
# AzureFunction endpoints. Run the same deployment again with the subscriptions on.
#
# az does not expand azd's ${NAME=default} placeholders of main.parameters.json, so each
# placeholder's value is passed again here, from the azd environment (azd exports it to hooks).
$ErrorActionPreference = 'Stop'
Set-StrictMode -Version Latest

if (-not $env:AZURE_RESOURCE_GROUP) {
    throw 'AZURE_RESOURCE_GROUP is not set (run this from azd, or set it)'
}
if (-not $env:AZURE_ENV_NAME) {
    throw 'AZURE_ENV_NAME is not set (run this from azd, or set it)'
}
$infra = Split-Path -Parent $PSScriptRoot
$networkIsolation = if ($env:NETWORK_ISOLATION) { $env:NETWORK_ISOLATION } else { 'false' }
$alertEmail = if ($env:ALERT_EMAIL) { $env:ALERT_EMAIL } else { '' }
$batchJobScope = if ($env:BATCH_JOB_SCOPE) { $env:BATCH_JOB_SCOPE } else { 'file' }

Write-Host "Creating the Event Grid subscriptions in resource group $env:AZURE_RESOURCE_GROUP"
az deployment group create `
    --resource-group $env:AZURE_RESOURCE_GROUP `
    --name "$($env:AZURE_ENV_NAME)-event-subscriptions" `
    --template-file (Join-Path $infra 'main.bicep') `
    --parameters (Join-Path $infra 'main.parameters.json') `
    --parameters "environmentName=$($env:AZURE_ENV_NAME)" `
    --parameters "networkIsolation=$networkIsolation" `
    --parameters "alertEmail=$alertEmail" `
    --parameters "batchJobScope=$batchJobScope" `
    --parameters deployEventSubscriptions=true `
    --output none
if ($LASTEXITCODE -ne 0) { throw "az deployment group create failed ($LASTEXITCODE)" }
