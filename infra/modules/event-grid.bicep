// The Event Grid system topic of the data account and one subscription per route of
// event-subscriptions.json, each delivering to a function and dead-lettering into the account.

@description('Required. Name of the system topic.')
param name string

@description('Required. Azure region (the data account\'s).')
param location string

@description('Optional. Tags for the topic.')
param tags object = {}

@description('Required. Name of the data storage account (the event source and dead-letter destination).')
param storageAccountName string

@description('Required. Name of the function app the subscriptions deliver to.')
param functionAppName string

@description('Required. Container Event Grid dead-letters into.')
@minLength(3)
@maxLength(63)
param deadLetterContainerName string

@description('Required. The subscriptions array of event-subscriptions.json.')
param subscriptions array

@description('Optional. In folder scope, the folder marker blob name: the routes marked markerFilter then filter on subjectEndsWith /<marker>, so their function runs once per folder. Empty: file scope.')
param folderMarker string = ''

@description('Optional. Create the subscriptions. Event Grid validates an AzureFunction destination when the subscription is created, so this needs the function code published first.')
param deployEventSubscriptions bool = false

var storageBlobDataContributorRoleId = 'ba92f5b4-2d11-453d-a403-e96b0029c9fe' // Storage Blob Data Contributor

resource dataAccount 'Microsoft.Storage/storageAccounts@2026-04-01' existing = {
  name: storageAccountName
}

resource functionApp 'Microsoft.Web/sites@2025-03-01' existing = {
  name: functionAppName
}

resource systemTopic 'Microsoft.EventGrid/systemTopics@2025-02-15' = {
  name: name
  location: location
  tags: tags
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    source: dataAccount.id
    topicType: 'Microsoft.Storage.StorageAccounts'
  }
}

// Dead-lettering writes blobs with the topic's identity.
module deadLetterWriter 'storage-role-assignment.bicep' = {
  name: 'deadletter-writer-${uniqueString(systemTopic.id)}'
  params: {
    storageAccountName: dataAccount.name
    principalId: systemTopic.identity.principalId
    principalType: 'ServicePrincipal'
    roleDefinitionGuid: storageBlobDataContributorRoleId
    roleDescription: 'Event Grid writes undeliverable events to the ${deadLetterContainerName} container.'
  }
}

resource eventSubscriptions 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2025-02-15' = [
  for route in (deployEventSubscriptions ? subscriptions : []): {
    parent: systemTopic
    name: route.name
    dependsOn: [
      deadLetterWriter
    ]
    properties: {
      destination: {
        endpointType: 'AzureFunction'
        properties: {
          resourceId: '${functionApp.id}/functions/${route.function}'
          maxEventsPerBatch: route.maxEventsPerBatch
          preferredBatchSizeInKilobytes: route.preferredBatchSizeInKilobytes
        }
      }
      eventDeliverySchema: route.eventDeliverySchema
      // route['filter'], not route.filter: the Bicep parser checkov uses reads `.filter` as the
      // filter() function and then skips the whole file.
      filter: {
        includedEventTypes: route['filter'].includedEventTypes
        subjectBeginsWith: route['filter'].subjectBeginsWith
        // Nested conditionals and route['...'], not `&&`, `!` or `route.x ? ...`: the Bicep parser the
        // tests and checkov read the template with groups those wrongly.
        subjectEndsWith: empty(folderMarker) ? route['filter'].subjectEndsWith : (route['markerFilter'] ? '/${folderMarker}' : route['filter'].subjectEndsWith)
        isSubjectCaseSensitive: route['filter'].isSubjectCaseSensitive
        advancedFilters: route['filter'].advancedFilters
      }
      retryPolicy: {
        maxDeliveryAttempts: route.retryPolicy.maxDeliveryAttempts
        eventTimeToLiveInMinutes: route.retryPolicy.eventTimeToLiveInMinutes
      }
      deadLetterWithResourceIdentity: {
        identity: {
          type: 'SystemAssigned'
        }
        deadLetterDestination: {
          endpointType: 'StorageBlob'
          properties: {
            resourceId: dataAccount.id
            blobContainerName: deadLetterContainerName
          }
        }
      }
    }
  }
]

@description('The system topic resource id (the scope of its metric alerts).')
output id string = systemTopic.id

@description('The system topic name.')
output name string = systemTopic.name

@description('The names of the subscriptions created by this deployment (empty when deployEventSubscriptions is false).')
output subscriptionNames array = [for route in (deployEventSubscriptions ? subscriptions : []): route.name]
