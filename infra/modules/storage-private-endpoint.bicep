// One private endpoint for one sub-resource (blob, table, dfs) of a storage account, with
// the DNS zone group that registers its address in the matching privatelink zone.

@description('Required. Name of the storage account, in this resource group.')
param storageAccountName string

@description('Required. The storage sub-resource the endpoint serves.')
@allowed([
  'blob'
  'table'
  'dfs'
])
param groupId string

@description('Required. Azure region (the virtual network\'s).')
param location string

@description('Optional. Tags for the endpoint.')
param tags object = {}

@description('Required. Resource id of the subnet the endpoint gets its address from.')
param subnetId string

@description('Required. Resource id of the privatelink zone of this sub-resource.')
param privateDnsZoneId string

resource account 'Microsoft.Storage/storageAccounts@2026-04-01' existing = {
  name: storageAccountName
}

resource endpoint 'Microsoft.Network/privateEndpoints@2025-09-01' = {
  name: 'pe-${storageAccountName}-${groupId}'
  location: location
  tags: tags
  properties: {
    subnet: {
      id: subnetId
    }
    privateLinkServiceConnections: [
      {
        name: '${storageAccountName}-${groupId}'
        properties: {
          privateLinkServiceId: account.id
          groupIds: [
            groupId
          ]
        }
      }
    ]
  }
}

resource zoneGroup 'Microsoft.Network/privateEndpoints/privateDnsZoneGroups@2025-09-01' = {
  parent: endpoint
  name: 'default'
  properties: {
    privateDnsZoneConfigs: [
      {
        name: groupId
        properties: {
          privateDnsZoneId: privateDnsZoneId
        }
      }
    ]
  }
}

@description('The private endpoint resource id.')
output id string = endpoint.id
