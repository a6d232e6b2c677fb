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
  //checkov:skip=CKV_AZURE_35:The Flex Consumption app has no VNet integration in this template, so it reaches storage over the public endpoint; access needs an Entra token (shared keys are off).
  //checkov:skip=CKV_AZURE_59:Same reason as CKV_AZURE_35: no private endpoints in this template; every request is authorised with Entra ID and RBAC.
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
    publicNetworkAccess: 'Enabled'
    supportsHttpsTrafficOnly: true
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
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
