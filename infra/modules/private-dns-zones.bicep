// The privatelink DNS zones of the storage sub-resources the private endpoints serve, each
// linked to the virtual network so the app resolves the accounts' names to private addresses.

@description('Required. Names of the zones: privatelink.<sub-resource>.<storage suffix of the cloud>.')
param zoneNames array

@description('Required. Resource id of the virtual network to link.')
param virtualNetworkId string

@description('Optional. Tags for the zones and links.')
param tags object = {}

resource zones 'Microsoft.Network/privateDnsZones@2024-06-01' = [
  for zoneName in zoneNames: {
    name: zoneName
    location: 'global'
    tags: tags
  }
]

resource links 'Microsoft.Network/privateDnsZones/virtualNetworkLinks@2024-06-01' = [
  for (zoneName, index) in zoneNames: {
    parent: zones[index]
    name: 'link-${uniqueString(virtualNetworkId)}'
    location: 'global'
    tags: tags
    properties: {
      registrationEnabled: false
      virtualNetwork: {
        id: virtualNetworkId
      }
    }
  }
]

@description('Zone resource ids, in the order of zoneNames.')
output zoneIds array = [for (zoneName, index) in zoneNames: zones[index].id]
