// Log Analytics and Application Insights that accept telemetry only from Entra identities.

@description('Required. Name of the Log Analytics workspace.')
param logAnalyticsName string

@description('Required. Name of the Application Insights component.')
param applicationInsightsName string

@description('Required. Azure region of both.')
param location string

@description('Optional. Tags for both.')
param tags object = {}

@description('Optional. Days Log Analytics keeps data.')
@minValue(30)
@maxValue(730)
param retentionInDays int = 30

@description('Required. Object id of the identity that publishes telemetry (the function app identity).')
param publisherPrincipalId string

var monitoringMetricsPublisherRoleId = '3913510d-42f4-4e42-8a64-420c390055eb' // Monitoring Metrics Publisher
var metricsPublisherRoleDefinitionId = subscriptionResourceId('Microsoft.Authorization/roleDefinitions', monitoringMetricsPublisherRoleId)

resource logAnalytics 'Microsoft.OperationalInsights/workspaces@2026-03-01' = {
  name: logAnalyticsName
  location: location
  tags: tags
  properties: {
    retentionInDays: retentionInDays
    sku: {
      name: 'PerGB2018'
    }
  }
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: applicationInsightsName
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: logAnalytics.id
    // Ingestion needs an Entra token (APPLICATIONINSIGHTS_AUTHENTICATION_STRING), not the key.
    DisableLocalAuth: true
  }
}

resource metricsPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  scope: applicationInsights
  name: guid(applicationInsights.id, publisherPrincipalId, metricsPublisherRoleDefinitionId)
  properties: {
    principalId: publisherPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: metricsPublisherRoleDefinitionId
    description: 'The function app sends telemetry with its identity (local auth is off).'
  }
}

@description('The Application Insights component name.')
output applicationInsightsName string = applicationInsights.name

@description('The Application Insights connection string (endpoints and the resource id; not a secret: local auth is off).')
output applicationInsightsConnectionString string = applicationInsights.properties.ConnectionString

@description('The Application Insights component resource id (the scope of the log alerts).')
output applicationInsightsId string = applicationInsights.id

@description('The Log Analytics workspace resource id.')
output logAnalyticsId string = logAnalytics.id
