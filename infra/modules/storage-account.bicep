// A storage account reachable only with Entra ID (shared keys off), and its blob containers.

@description('Required. Name of the storage account (3-24 lowercase letters and digits).')
@minLength(3)
@maxLength(24)
param name string

@description('Required. Azure region of the account.')
param location string

@description('Optional. Tags for the account.')
param tags object = {}

@description('Required. Blob containers to create.')
@minLength(1)
param containerNames array

@description('Optional. Replication of the account.')
@allowed([
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GRS'
  'Standard_GZRS'
  'Standard_RAGRS'
  'Standard_RAGZRS'
])
param skuName string = 'Standard_GRS'

@description('Optional. Hierarchical namespace (ADLS Gen2). Event Grid then reports CreateFile and FlushWithClose for each upload; the subscriptions filter on data.api.')
param isHnsEnabled bool = false

@description('Optional. Public endpoint: Enabled (its network rules decide) or Disabled (private endpoints only). The default is the networkIsolation=false setting.')
@allowed([
  'Enabled'
  'Disabled'
])
param publicNetworkAccess string = 'Enabled'

@description('Optional. What the public endpoint does with a request no network rule allows: Allow, or Deny (only trusted Azure services and private endpoints get in). The default is the networkIsolation=false setting.')
@allowed([
  'Allow'
  'Deny'
])
param networkDefaultAction string = 'Allow'

@description('Optional. Days a deleted blob or container can be restored.')
@minValue(1)
@maxValue(365)
param deleteRetentionDays int = 7

resource account 'Microsoft.Storage/storageAccounts@2026-04-01' = {
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: skuName
  }
  //checkov:skip=CKV_AZURE_35:With networkIsolation=false (the default) the app has no VNet integration and reaches storage over the public endpoint, so the default action stays Allow; every request still needs an Entra token (shared keys are off). With networkIsolation=true both accounts deny by default (tests/test_infra.py renders that mode and checkov passes).
  //checkov:skip=CKV_AZURE_59:With networkIsolation=false the public endpoint is the app's only path. With networkIsolation=true the host account disables it, but the data account keeps it on behind defaultAction Deny: Event Grid writes dead-letters with the system topic identity as a trusted Azure service, and trusted-service access exists only on the public endpoint (Event Grid cannot use private endpoints).
  properties: {
    accessTier: 'Hot'
    allowBlobPublicAccess: false
    allowCrossTenantReplication: false
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    isHnsEnabled: isHnsEnabled
    isLocalUserEnabled: false
    isSftpEnabled: false
    minimumTlsVersion: 'TLS1_2'
    publicNetworkAccess: publicNetworkAccess
    supportsHttpsTrafficOnly: true
    networkAcls: {
      // Event Grid (blob event publishing, dead-letter writes) passes as a trusted service.
      bypass: 'AzureServices'
      defaultAction: networkDefaultAction
    }
    encryption: {
      keySource: 'Microsoft.Storage'
      requireInfrastructureEncryption: true
      services: {
        blob: {
          enabled: true
          keyType: 'Account'
        }
      }
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2026-04-01' = {
  parent: account
  name: 'default'
  properties: {
    deleteRetentionPolicy: {
      enabled: true
      days: deleteRetentionDays
    }
    containerDeleteRetentionPolicy: {
      enabled: true
      days: deleteRetentionDays
    }
  }
}

resource containers 'Microsoft.Storage/storageAccounts/blobServices/containers@2026-04-01' = [
  for containerName in containerNames: {
    parent: blobService
    name: containerName
    properties: {
      publicAccess: 'None'
    }
  }
]

@description('The account name.')
output name string = account.name

@description('The account resource id.')
output id string = account.id

@description('The blob service endpoint, with a trailing slash.')
output blobEndpoint string = account.properties.primaryEndpoints.blob

@description('The queue service endpoint, with a trailing slash.')
output queueEndpoint string = account.properties.primaryEndpoints.queue

@description('The table service endpoint, with a trailing slash.')
output tableEndpoint string = account.properties.primaryEndpoints.table
