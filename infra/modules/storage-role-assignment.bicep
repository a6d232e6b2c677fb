// One role for one principal on an existing storage account of this resource group.
// A module, not an inline resource: the principal id is often known only at deployment time,
// and a role assignment's name must be computable when the deployment starts.

@description('Required. Name of the storage account the role applies to.')
param storageAccountName string

@description('Required. Object id of the principal that gets the role.')
param principalId string

@description('Required. Kind of principal; explicit so a fresh identity is not looked up before it has replicated.')
@allowed([
  'ServicePrincipal'
  'User'
  'Group'
])
param principalType string

@description('Required. GUID of the built-in role definition.')
param roleDefinitionGuid string

@description('Optional. Why the principal has this role, shown on the assignment.')
param roleDescription string = ''

var roleDefinitionId = subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleDefinitionGuid)

resource account 'Microsoft.Storage/storageAccounts@2026-04-01' existing = {
  name: storageAccountName
}

resource roleAssignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  scope: account
  name: guid(account.id, principalId, roleDefinitionId)
  properties: {
    principalId: principalId
    principalType: principalType
    roleDefinitionId: roleDefinitionId
    description: roleDescription
  }
}

@description('The role assignment resource id.')
output id string = roleAssignment.id
