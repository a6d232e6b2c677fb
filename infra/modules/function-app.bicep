// A Flex Consumption (FC1, Linux) Python function app running as a user-assigned identity:
// host storage, code package and telemetry all use that identity; no keys anywhere.

@description('Required. Name of the function app.')
@minLength(2)
@maxLength(60)
param name string

@description('Required. Name of the Flex Consumption plan.')
param planName string

@description('Required. Azure region (one that offers Flex Consumption).')
param location string

@description('Optional. Tags for the plan and the app.')
param tags object = {}

@description('Optional. Tags only the app gets (azd finds its service by azd-service-name).')
param appTags object = {}

@description('Required. Resource id of the user-assigned identity the app runs as.')
param identityId string

@description('Required. Client id of that identity.')
param identityClientId string

@description('Required. Name of the host storage account (AzureWebJobsStorage), in this resource group.')
param hostStorageAccountName string

@description('Required. Blob container of the host account that holds the deployed code package.')
param deploymentContainerName string

@description('Required. Application Insights connection string.')
param applicationInsightsConnectionString string

@description('Required. The settings the app code reads (name to value); the host settings are added here.')
param appSettings object

@description('Optional. Python version.')
@allowed([
  '3.10'
  '3.11'
  '3.12'
])
param pythonVersion string = '3.11'

@description('Optional. Upper bound of instances the app scales out to.')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 100

@description('Optional. Memory of each instance in MB.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('Optional. Events one instance runs at once (scaleAndConcurrency.triggers.http.perInstanceConcurrency); main.bicep derives it from instanceMemoryMB with the decode budget.')
@minValue(1)
@maxValue(1000)
param perInstanceConcurrency int = 16

@description('Optional. Spread the instances over availability zones; only in regions that offer zone-redundant Flex Consumption.')
param zoneRedundant bool = false

@description('Optional. Resource id of a subnet delegated to Microsoft.App/environments for VNet integration (networkIsolation). Empty: none.')
param virtualNetworkSubnetId string = ''

resource hostStorage 'Microsoft.Storage/storageAccounts@2026-04-01' existing = {
  name: hostStorageAccountName
}

resource plan 'Microsoft.Web/serverfarms@2025-03-01' = {
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    reserved: true
    //checkov:skip=CKV_AZURE_225:Zone-redundant Flex Consumption exists only in some regions, so it is the zoneRedundant parameter (default false) rather than a fixed true that would fail elsewhere.
    zoneRedundant: zoneRedundant
  }
}

// Flex Consumption takes the runtime and scale from functionAppConfig and refuses the
// FUNCTIONS_WORKER_RUNTIME, FUNCTIONS_EXTENSION_VERSION and WEBSITE_* settings.
// AzureWebJobsStorage names the two services the host uses and main.bicep grants: blob and
// table (no queue service: no blob trigger, no Durable Functions).
var hostSettings = {
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identityClientId
  AzureWebJobsStorage__blobServiceUri: hostStorage.properties.primaryEndpoints.blob
  AzureWebJobsStorage__tableServiceUri: hostStorage.properties.primaryEndpoints.table
  APPLICATIONINSIGHTS_CONNECTION_STRING: applicationInsightsConnectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identityClientId};Authorization=AAD'
}

resource site 'Microsoft.Web/sites@2025-03-01' = {
  name: name
  location: location
  tags: union(tags, appTags)
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    // Outbound calls (host storage, data account, batch endpoint) leave through this subnet, and
    // the VNet-linked privatelink zones resolve the storage accounts to their private endpoints.
    virtualNetworkSubnetId: empty(virtualNetworkSubnetId) ? null : virtualNetworkSubnetId
    //checkov:skip=CKV_AZURE_17:Event Grid delivers to an AzureFunction destination through the runtime's Event Grid webhook with the system key and presents no client certificate; requiring one would refuse every event.
    clientCertEnabled: false
    //checkov:skip=CKV_AZURE_222:Event Grid reaches an AzureFunction destination over the public endpoint of the app and cannot deliver to a private endpoint, so public network access stays on in both networkIsolation modes; the webhook needs the system key Event Grid holds.
    publicNetworkAccess: 'Enabled'
    //checkov:skip=CKV_AZURE_213:Health check pings an HTTP path to pull unhealthy instances out of a load balancer; this app has no HTTP functions and Flex Consumption does not use App Service health check.
    siteConfig: {
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
      appSettings: [
        for setting in items(union(hostSettings, appSettings)): {
          name: setting.key
          value: setting.value
        }
      ]
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${hostStorage.properties.primaryEndpoints.blob}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      //checkov:skip=CKV_AZURE_212:Flex Consumption sizes itself per event and scales to zero; instances come from functionAppConfig.scaleAndConcurrency, not numberOfWorkers, and Event Grid redelivers what a lost instance did not finish.
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
        // Event Grid delivers over HTTP (the runtime's webhook); this is the only
        // per-instance concurrency Flex Consumption takes (docs/memory-budget.md).
        triggers: {
          http: {
            perInstanceConcurrency: perInstanceConcurrency
          }
        }
      }
      runtime: {
        name: 'python'
        version: pythonVersion
      }
    }
  }
}

@description('The function app name.')
output name string = site.name

@description('The function app resource id.')
output id string = site.id

@description('The function app default host name.')
output defaultHostName string = site.properties.defaultHostName
