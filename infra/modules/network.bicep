// The virtual network of networkIsolation: one subnet the Flex Consumption app integrates with
// (delegated to Microsoft.App/environments) and one for the storage private endpoints.

@description('Required. Name of the virtual network.')
param name string

@description('Required. Azure region (the app\'s: Flex Consumption integrates only with a network in its own region).')
param location string

@description('Optional. Tags for the network.')
param tags object = {}

@description('Required. Address space of the network (CIDR).')
param addressPrefix string

@description('Required. Range of the app subnet (CIDR); instances take addresses from it as they scale out.')
param appSubnetPrefix string

@description('Required. Range of the private endpoint subnet (CIDR).')
param privateEndpointSubnetPrefix string

var appSubnetName = 'app'
var privateEndpointSubnetName = 'private-endpoints'

resource network 'Microsoft.Network/virtualNetworks@2025-09-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    addressSpace: {
      addressPrefixes: [
        addressPrefix
      ]
    }
    subnets: [
      {
        name: appSubnetName
        properties: {
          addressPrefix: appSubnetPrefix
          delegations: [
            {
              name: 'flex-consumption'
              properties: {
                serviceName: 'Microsoft.App/environments'
              }
            }
          ]
        }
      }
      {
        name: privateEndpointSubnetName
        properties: {
          addressPrefix: privateEndpointSubnetPrefix
          privateEndpointNetworkPolicies: 'Disabled'
        }
      }
    ]
  }
}

@description('The virtual network resource id.')
output id string = network.id

@description('The app subnet resource id (the function app\'s virtualNetworkSubnetId).')
output appSubnetId string = resourceId('Microsoft.Network/virtualNetworks/subnets', network.name, appSubnetName)

@description('The private endpoint subnet resource id.')
output privateEndpointSubnetId string = resourceId('Microsoft.Network/virtualNetworks/subnets', network.name, privateEndpointSubnetName)
