// Blob-event functions: a data account whose BlobCreated events Event Grid delivers to two
// functions (thumbnails, Azure ML batch dispatch) on a Flex Consumption app.
//
// Two phases, because Event Grid validates an AzureFunction destination when the subscription
// is created: deploy with deployEventSubscriptions=false, publish the code, deploy again with
// deployEventSubscriptions=true (azd's postdeploy hook does the last step).
//
// networkIsolation=true adds a virtual network, private endpoints for both storage accounts and
// closes them to public networks, except the trusted-service path Event Grid needs (docs/networking.md,
// "Private networking").
targetScope = 'resourceGroup'

@description('Required. Name of the environment (dev, test, prod...); seeds the resource names and tags.')
@minLength(1)
@maxLength(64)
param environmentName string

@description('Optional. Azure region of every resource; it must offer Flex Consumption.')
param location string = resourceGroup().location

@description('Optional. Create the Event Grid subscriptions. Leave false until the function code is published.')
param deployEventSubscriptions bool = false

@description('Optional. Scoring URI of an existing Azure ML batch endpoint (https://<endpoint>.<region>.inference.ml.azure.com/jobs). Empty: the app logs what it would submit (dry-run).')
param batchEndpointUri string = ''

@description('Optional. Batch deployment to invoke (header azureml-model-deployment). Empty: the endpoint\'s default deployment.')
param batchDeployment string = ''

@description('Optional. Name of the job input that receives the blob.')
@minLength(1)
param batchInputName string = 'input_data'

@description('Optional. What one job covers: file (a job per new file version) or folder (a job per folder, when its batchFolderMarker blob is written; the batch subscription then filters on that marker).')
@allowed([
  'file'
  'folder'
])
param batchJobScope string = 'file'

@description('Optional. In folder scope, the blob name (no folders) that marks a folder ready.')
@minLength(1)
@maxLength(128)
param batchFolderMarker string = '_SUCCESS'

@description('Optional. Job output: an azureml://datastores/<datastore>/paths/... or https blob URL template with {job} (and optionally {path}). Empty: no output is sent.')
param batchOutputUri string = ''

@description('Optional. Name of the job output (score for model deployments).')
@minLength(1)
param batchOutputName string = 'score'

@description('Optional. Scope of the token the app requests for the batch endpoint.')
@minLength(1)
param batchTokenScope string = 'https://ml.azure.com/.default'

@description('Optional. Seconds one request to the batch endpoint may take.')
@minValue(1)
@maxValue(230)
param batchTimeoutSeconds int = 30

@description('Optional. When track_batch_jobs asks the batch endpoint about open jobs: a six-field NCRONTAB schedule (second minute hour day month day-of-week).')
@minLength(11)
param batchTrackSchedule string = '0 */5 * * * *'

@description('Optional. Resource id of the Azure ML workspace of the batch endpoint; the app identity gets AzureML Data Scientist on it. Empty: no role is assigned.')
param mlWorkspaceResourceId string = ''

@description('Optional. Object id of the managed identity the batch jobs read their input with (for example the compute cluster\'s); it gets Storage Blob Data Reader on the data account. Empty: none.')
param batchReaderPrincipalId string = ''

@description('Optional. Longest sides of the thumbnail renditions in pixels (16-2048 each, at most 8), comma-separated. The first is the primary rendition, at the source\'s own path; each other size N is under N/.')
param thumbnailSizes string = '128'

@description('Optional. contain: the whole image in the box. cover: cropped to thumbnailAspect, keeping the region of most interest (entropy, as libvips).')
@allowed(['contain', 'cover'])
param thumbnailFit string = 'contain'

@description('Optional. Width:height of a cover thumbnail, such as 1:1 or 16:9.')
param thumbnailAspect string = '1:1'

@description('Optional. BlurHash components (such as 4x3) stored in each thumbnail\'s metadata as a placeholder; off for none.')
param thumbnailBlurhash string = '4x3'

@description('Optional. Cache-Control of every thumbnail blob. A new source version overwrites its thumbnail in place, so a CDN in front should be purged or use the versioned URL.')
param thumbnailCacheControl string = 'public, max-age=31536000, immutable'

@description('Optional. Larger source images are refused (decompression-bomb guard).')
@minValue(1)
@maxValue(1000000000)
param thumbnailMaxPixels int = 150000000

@description('Optional. Larger source blobs are refused without being downloaded.')
@minValue(1)
@maxValue(4294967296)
param thumbnailMaxBytes int = 268435456

@description('Optional. Thumbnail format: auto (JPEG, or PNG when transparent), webp, jpeg or png.')
@allowed(['auto', 'webp', 'jpeg', 'png'])
param thumbnailFormat string = 'auto'

@description('Optional. Frames kept of an animated GIF or WebP (the first ones); 1 makes every thumbnail a still.')
@minValue(1)
@maxValue(1000)
param thumbnailMaxFrames int = 100

@description('Optional. Replication of the data account.')
@allowed([
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GRS'
  'Standard_GZRS'
  'Standard_RAGRS'
  'Standard_RAGZRS'
])
param dataStorageSku string = 'Standard_GRS'

@description('Optional. Hierarchical namespace (ADLS Gen2) on the data account.')
param dataStorageHierarchicalNamespace bool = false

@description('Optional. Upper bound of function instances.')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 100

@description('Optional. Memory of each function instance in MB; it also sets the decode budget (THUMBNAIL_DECODE_BUDGET_MB) and the per-instance concurrency.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('Optional. Spread the function instances over availability zones (only where Flex Consumption offers it).')
param zoneRedundant bool = false

@description('Optional. Name of the data storage account. Default: generated.')
@maxLength(24)
param dataStorageAccountName string = ''

@description('Optional. Name of the host storage account (AzureWebJobsStorage and the code package). Default: generated.')
@maxLength(24)
param hostStorageAccountName string = ''

@description('Optional. Name of the function app. Default: generated.')
@maxLength(60)
param functionAppName string = ''

@description('Optional. Name of the Flex Consumption plan. Default: generated.')
param planName string = ''

@description('Optional. Name of the user-assigned identity. Default: generated.')
param identityName string = ''

@description('Optional. Name of the Application Insights component. Default: generated.')
param applicationInsightsName string = ''

@description('Optional. Name of the Log Analytics workspace. Default: generated.')
param logAnalyticsName string = ''

@description('Optional. Name of the Event Grid system topic. Default: generated.')
param systemTopicName string = ''

@description('Optional. Private networking: VNet integration for the app, private endpoints for both storage accounts, public access closed except for Event Grid (see docs/networking.md).')
param networkIsolation bool = false

@description('Optional. Address space of the virtual network (networkIsolation only).')
param vnetAddressPrefix string = '10.0.0.0/16'

@description('Optional. Range of the subnet the app integrates with, delegated to Microsoft.App/environments (networkIsolation only).')
param appSubnetAddressPrefix string = '10.0.0.0/24'

@description('Optional. Range of the subnet of the private endpoints (networkIsolation only).')
param privateEndpointSubnetAddressPrefix string = '10.0.1.0/24'

@description('Optional. Name of the virtual network. Default: generated.')
param vnetName string = ''

@description('Optional. Address the alerts mail. Empty: the alert rules are still created and fire into the portal.')
param alertEmail string = ''

@description('Optional. Severity of alerts that need a person: events dead-lettered or dropped, batch jobs Failed (0 critical .. 4 verbose).')
@minValue(0)
@maxValue(4)
param alertLossSeverity int = 1

@description('Optional. Severity of alerts on failure rates that retries may absorb: failed deliveries, failed executions.')
@minValue(0)
@maxValue(4)
param alertFailureSeverity int = 2

@description('Optional. How often the alert rules are evaluated.')
@allowed([
  'PT1M'
  'PT5M'
  'PT15M'
  'PT30M'
  'PT1H'
])
param alertEvaluationFrequency string = 'PT5M'

@description('Optional. The period each alert evaluation looks back over; one shorter than alertEvaluationFrequency is raised to it (Azure Monitor refuses a shorter one).')
@allowed([
  'PT5M'
  'PT15M'
  'PT30M'
  'PT1H'
  'PT6H'
])
param alertWindowSize string = 'PT15M'

@description('Optional. Failed delivery attempts of one subscription per window that fire an alert.')
@minValue(1)
param alertDeliveryFailureThreshold int = 10

@description('Optional. Failed executions of one function per window that fire an alert.')
@minValue(1)
param alertFunctionFailureThreshold int = 5

@description('Optional. Extra tags for every resource.')
param tags object = {}

// Shared with the local event source and the ops tools: one routing table for all of them.
var routing = loadJsonContent('event-subscriptions.json')
var containers = routing.containers

// azd's naming: a resource-type abbreviation (abbreviations.json) and a token unique to the
// subscription, environment and region. The token also suffixes the nested deployment names.
var abbrs = loadJsonContent('abbreviations.json')
var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var names = {
  dataStorage: empty(dataStorageAccountName) ? '${abbrs.storageStorageAccounts}data${resourceToken}' : dataStorageAccountName
  hostStorage: empty(hostStorageAccountName) ? '${abbrs.storageStorageAccounts}host${resourceToken}' : hostStorageAccountName
  functionApp: empty(functionAppName) ? '${abbrs.webSitesFunctions}${resourceToken}' : functionAppName
  plan: empty(planName) ? '${abbrs.webServerFarms}${resourceToken}' : planName
  identity: empty(identityName) ? '${abbrs.managedIdentityUserAssignedIdentities}${resourceToken}' : identityName
  applicationInsights: empty(applicationInsightsName) ? '${abbrs.insightsComponents}${resourceToken}' : applicationInsightsName
  logAnalytics: empty(logAnalyticsName) ? '${abbrs.operationalInsightsWorkspaces}${resourceToken}' : logAnalyticsName
  systemTopic: empty(systemTopicName) ? '${abbrs.eventGridSystemTopics}${resourceToken}' : systemTopicName
  vnet: empty(vnetName) ? '${abbrs.networkVirtualNetworks}${resourceToken}' : vnetName
  alerts: '${abbrs.insightsAlerts}${resourceToken}'
}
var deploymentContainerName = 'app-package'
var allTags = union(tags, { 'azd-env-name': environmentName })

// Built-in roles (https://learn.microsoft.com/azure/role-based-access-control/built-in-roles).
var storageBlobDataContributorRoleId = 'ba92f5b4-2d11-453d-a403-e96b0029c9fe' // Storage Blob Data Contributor
var storageBlobDataOwnerRoleId = 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b' // Storage Blob Data Owner
var storageBlobDataReaderRoleId = '2a2b9908-6ea1-4ae2-8e65-a410df84e7d1' // Storage Blob Data Reader
var storageTableDataContributorRoleId = '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3' // Storage Table Data Contributor
var azureMLDataScientistRoleId = 'f6c7c914-8db3-469d-8ca1-694a8f32e121' // AzureML Data Scientist

// /subscriptions/<sub>/resourceGroups/<rg>/providers/Microsoft.MachineLearningServices/workspaces/<name>;
// this resource group's id stands in when none is given, so the indexes below always exist.
var mlWorkspaceIdParts = split(empty(mlWorkspaceResourceId) ? resourceGroup().id : mlWorkspaceResourceId, '/')

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2024-11-30' = {
  name: names.identity
  location: location
  tags: allTags
}

module dataStorage 'modules/storage-account.bicep' = {
  name: 'data-storage-${resourceToken}'
  params: {
    name: names.dataStorage
    location: location
    tags: allTags
    skuName: dataStorageSku
    isHnsEnabled: dataStorageHierarchicalNamespace
    // Stays Enabled behind Deny when isolated: Event Grid dead-letters through the public
    // endpoint as a trusted service (docs/networking.md).
    publicNetworkAccess: 'Enabled'
    networkDefaultAction: networkIsolation ? 'Deny' : 'Allow'
    containerNames: [
      containers.images
      containers.thumbnails
      containers.batchInput
      containers.dispatchLedger
      containers.deadLetter
    ]
  }
}

module hostStorage 'modules/storage-account.bicep' = {
  name: 'host-storage-${resourceToken}'
  params: {
    name: names.hostStorage
    location: location
    tags: allTags
    // Host state (locks, keys) and the code package are re-created by a deployment.
    skuName: 'Standard_ZRS'
    containerNames: [
      deploymentContainerName
    ]
    publicNetworkAccess: networkIsolation ? 'Disabled' : 'Enabled'
    networkDefaultAction: networkIsolation ? 'Deny' : 'Allow'
  }
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring-${resourceToken}'
  params: {
    logAnalyticsName: names.logAnalytics
    applicationInsightsName: names.applicationInsights
    location: location
    tags: allTags
    publisherPrincipalId: identity.properties.principalId
  }
}

// The app reads sources and writes thumbnails and ledger blobs; it needs no ownership.
module appOnDataStorage 'modules/storage-role-assignment.bicep' = {
  name: 'app-on-data-storage-${resourceToken}'
  params: {
    storageAccountName: dataStorage.outputs.name
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
    roleDefinitionGuid: storageBlobDataContributorRoleId
    roleDescription: 'The function app reads images and batch inputs and writes thumbnails and the dispatch ledger.'
  }
}

// What the host does with AzureWebJobsStorage (docs/deploy.md, "Role assignments"): blobs for keys,
// locks (the timer trigger's singleton lock and schedule monitor included) and the code package
// (Storage Blob Data Owner), and tables for its diagnostic events (Storage Table Data
// Contributor). No queue role: only blob triggers and Durable Functions use the host's queues,
// and this app has neither (Event Grid and timer triggers).
module appOnHostStorage 'modules/storage-role-assignment.bicep' = {
  name: 'app-on-host-storage-${resourceToken}'
  params: {
    storageAccountName: hostStorage.outputs.name
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
    roleDefinitionGuid: storageBlobDataOwnerRoleId
    roleDescription: 'Functions host storage (AzureWebJobsStorage) and the deployment package.'
  }
}

module appOnHostTables 'modules/storage-role-assignment.bicep' = {
  name: 'app-on-host-tables-${resourceToken}'
  params: {
    storageAccountName: hostStorage.outputs.name
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
    roleDefinitionGuid: storageTableDataContributorRoleId
    roleDescription: 'The Functions host writes its diagnostic events to tables of AzureWebJobsStorage.'
  }
}

module appOnMlWorkspace 'modules/ml-workspace-role.bicep' = if (!empty(mlWorkspaceResourceId)) {
  name: 'app-on-ml-workspace-${resourceToken}'
  scope: resourceGroup(mlWorkspaceIdParts[2], mlWorkspaceIdParts[4])
  params: {
    workspaceName: last(mlWorkspaceIdParts)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
    roleDefinitionGuid: azureMLDataScientistRoleId
    roleDescription: 'The function app submits batch endpoint jobs.'
  }
}

module batchReaderOnDataStorage 'modules/storage-role-assignment.bicep' = if (!empty(batchReaderPrincipalId)) {
  name: 'batch-reader-on-data-storage-${resourceToken}'
  params: {
    storageAccountName: dataStorage.outputs.name
    principalId: batchReaderPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionGuid: storageBlobDataReaderRoleId
    roleDescription: 'Azure ML batch jobs read the blobs the function app submits.'
  }
}

// --- Private networking (networkIsolation) --------------------------------------------------

// Every sub-resource the host uses, the same as its role assignments above: blob (keys, locks,
// the Flex deployment package) and table (diagnostic events); the data account serves blob, and
// dfs when the hierarchical namespace is on.
var hostEndpointGroups = [
  'blob'
  'table'
]
var blobEndpointGroups = [
  'blob'
]
var hnsEndpointGroups = [
  'dfs'
]
var dataEndpointGroups = union(blobEndpointGroups, dataStorageHierarchicalNamespace ? hnsEndpointGroups : [])
var privateDnsGroups = union(hostEndpointGroups, dataStorageHierarchicalNamespace ? hnsEndpointGroups : [])
var storageSuffix = environment().suffixes.storage

module network 'modules/network.bicep' = if (networkIsolation) {
  name: 'network-${resourceToken}'
  params: {
    name: names.vnet
    location: location
    tags: allTags
    addressPrefix: vnetAddressPrefix
    appSubnetPrefix: appSubnetAddressPrefix
    privateEndpointSubnetPrefix: privateEndpointSubnetAddressPrefix
  }
}

module privateDnsZones 'modules/private-dns-zones.bicep' = if (networkIsolation) {
  name: 'private-dns-zones-${resourceToken}'
  params: {
    zoneNames: [for groupId in privateDnsGroups: 'privatelink.${groupId}.${storageSuffix}']
    virtualNetworkId: networkIsolation ? network.outputs.id : ''
    tags: allTags
  }
}

module hostEndpoints 'modules/storage-private-endpoint.bicep' = [
  for groupId in (networkIsolation ? hostEndpointGroups : []): {
    name: 'host-pe-${groupId}-${resourceToken}'
    dependsOn: [
      privateDnsZones
    ]
    params: {
      storageAccountName: hostStorage.outputs.name
      groupId: groupId
      location: location
      tags: allTags
      subnetId: networkIsolation ? network.outputs.privateEndpointSubnetId : ''
      privateDnsZoneId: resourceId('Microsoft.Network/privateDnsZones', 'privatelink.${groupId}.${storageSuffix}')
    }
  }
]

module dataEndpoints 'modules/storage-private-endpoint.bicep' = [
  for groupId in (networkIsolation ? dataEndpointGroups : []): {
    name: 'data-pe-${groupId}-${resourceToken}'
    dependsOn: [
      privateDnsZones
    ]
    params: {
      storageAccountName: dataStorage.outputs.name
      groupId: groupId
      location: location
      tags: allTags
      subnetId: networkIsolation ? network.outputs.privateEndpointSubnetId : ''
      privateDnsZoneId: resourceId('Microsoft.Network/privateDnsZones', 'privatelink.${groupId}.${storageSuffix}')
    }
  }
]

// What each instance size gets, both from instanceMemoryMB so that they cannot disagree: the
// decode budget (decoded image bytes the worker holds at once, THUMBNAIL_DECODE_BUDGET_MB)
// and the events one instance runs at once. Budget / concurrency (32-64 MB) is what every
// event can decode without waiting; the rest of the instance is for the host, the worker and
// the blobs in flight. handlers/memory.py (INSTANCE_SIZING) holds the same table and
// tests/test_infra_memory.py checks that they agree; docs/memory-budget.md explains it.
var instanceSizing = {
  '512': {
    decodeBudgetMB: 128
    perInstanceConcurrency: 4
  }
  '2048': {
    decodeBudgetMB: 1024
    perInstanceConcurrency: 16
  }
  '4096': {
    decodeBudgetMB: 2048
    perInstanceConcurrency: 32
  }
}
var sizing = instanceSizing[string(instanceMemoryMB)]

// Every setting handlers/settings.py reads, except DATA_STORAGE (a connection string, local
// runs only) and DATA_STORAGE__accountName (an alternative to blobServiceUri).
var appSettings = {
  DATA_STORAGE__blobServiceUri: dataStorage.outputs.blobEndpoint
  DATA_STORAGE__clientId: identity.properties.clientId
  AZURE_CLIENT_ID: identity.properties.clientId
  THUMBNAIL_CONTAINER: containers.thumbnails
  THUMBNAIL_SIZES: thumbnailSizes
  THUMBNAIL_FIT: thumbnailFit
  THUMBNAIL_ASPECT: thumbnailAspect
  THUMBNAIL_BLURHASH: thumbnailBlurhash
  THUMBNAIL_CACHE_CONTROL: thumbnailCacheControl
  THUMBNAIL_MAX_PIXELS: string(thumbnailMaxPixels)
  THUMBNAIL_MAX_BYTES: string(thumbnailMaxBytes)
  THUMBNAIL_FORMAT: thumbnailFormat
  THUMBNAIL_DECODE_BUDGET_MB: string(sizing.decodeBudgetMB)
  THUMBNAIL_MAX_FRAMES: string(thumbnailMaxFrames)
  DISPATCH_LEDGER_CONTAINER: containers.dispatchLedger
  DEADLETTER_CONTAINER: containers.deadLetter
  BATCH_ENDPOINT_URI: batchEndpointUri
  BATCH_DEPLOYMENT: batchDeployment
  BATCH_INPUT_NAME: batchInputName
  BATCH_JOB_SCOPE: batchJobScope
  BATCH_FOLDER_MARKER: batchFolderMarker
  BATCH_OUTPUT_URI: batchOutputUri
  BATCH_OUTPUT_NAME: batchOutputName
  BATCH_TOKEN_SCOPE: batchTokenScope
  BATCH_TIMEOUT_SECONDS: string(batchTimeoutSeconds)
  BATCH_TRACK_SCHEDULE: batchTrackSchedule
}

module functionApp 'modules/function-app.bicep' = {
  name: 'function-app-${resourceToken}'
  // With networkIsolation the host reaches its storage only through the private endpoints.
  dependsOn: [
    appOnHostStorage
    appOnHostTables
    hostEndpoints
  ]
  params: {
    name: names.functionApp
    planName: names.plan
    location: location
    tags: allTags
    appTags: {
      'azd-service-name': 'api'
    }
    identityId: identity.id
    identityClientId: identity.properties.clientId
    hostStorageAccountName: hostStorage.outputs.name
    deploymentContainerName: deploymentContainerName
    applicationInsightsConnectionString: monitoring.outputs.applicationInsightsConnectionString
    appSettings: appSettings
    pythonVersion: '3.11'
    maximumInstanceCount: maximumInstanceCount
    instanceMemoryMB: instanceMemoryMB
    perInstanceConcurrency: sizing.perInstanceConcurrency
    zoneRedundant: zoneRedundant
    virtualNetworkSubnetId: networkIsolation ? network.outputs.appSubnetId : ''
  }
}

module eventGrid 'modules/event-grid.bicep' = {
  name: 'event-grid-${resourceToken}'
  params: {
    name: names.systemTopic
    location: location
    tags: allTags
    storageAccountName: dataStorage.outputs.name
    functionAppName: functionApp.outputs.name
    deadLetterContainerName: containers.deadLetter
    subscriptions: routing.subscriptions
    folderMarker: (batchJobScope == 'folder') ? batchFolderMarker : ''
    deployEventSubscriptions: deployEventSubscriptions
  }
}

module alerts 'modules/alerts.bicep' = {
  name: 'alerts-${resourceToken}'
  params: {
    namePrefix: names.alerts
    location: location
    tags: allTags
    alertEmail: alertEmail
    systemTopicId: eventGrid.outputs.id
    applicationInsightsId: monitoring.outputs.applicationInsightsId
    lossSeverity: alertLossSeverity
    failureSeverity: alertFailureSeverity
    evaluationFrequency: alertEvaluationFrequency
    windowSize: alertWindowSize
    deliveryFailureThreshold: alertDeliveryFailureThreshold
    functionFailureThreshold: alertFunctionFailureThreshold
  }
}

output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = resourceGroup().name
output AZURE_FUNCTION_APP_NAME string = functionApp.outputs.name
output AZURE_FUNCTION_APP_HOST_NAME string = functionApp.outputs.defaultHostName
output AZURE_APP_IDENTITY_CLIENT_ID string = identity.properties.clientId
output AZURE_APP_IDENTITY_PRINCIPAL_ID string = identity.properties.principalId
output DATA_STORAGE_ACCOUNT_NAME string = dataStorage.outputs.name
output DATA_STORAGE_BLOB_ENDPOINT string = dataStorage.outputs.blobEndpoint
output HOST_STORAGE_ACCOUNT_NAME string = hostStorage.outputs.name
output DEADLETTER_CONTAINER string = containers.deadLetter
output AZURE_EVENT_GRID_SYSTEM_TOPIC_NAME string = eventGrid.outputs.name
output EVENT_SUBSCRIPTIONS_DEPLOYED bool = deployEventSubscriptions
output APPLICATIONINSIGHTS_NAME string = monitoring.outputs.applicationInsightsName
output NETWORK_ISOLATION bool = networkIsolation
output AZURE_ALERT_ACTION_GROUP_ID string = alerts.outputs.actionGroupId
