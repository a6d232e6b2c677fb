// A role on an existing Azure ML workspace. Deployed at the workspace's resource group (and
// subscription), which may differ from the app's: the caller sets the module scope.

@description('Required. Name of the Azure Machine Learning workspace.')
@minLength(1)
param workspaceName string

@description('Required. Object id of the principal that gets the role.')
param principalId string

@description('Required. Kind of principal.')
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

resource workspace 'Microsoft.MachineLearningServices/workspaces@2026-05-01' existing = {
  name: workspaceName
}

resource roleAssignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  scope: workspace
  name: guid(workspace.id, principalId, roleDefinitionId)
  properties: {
    principalId: principalId
    principalType: principalType
    roleDefinitionId: roleDefinitionId
    description: roleDescription
  }
}

@description('The role assignment resource id.')
output id string = roleAssignment.id
