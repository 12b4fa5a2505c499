// The Event Grid subscriptions: deployed by the postdeploy hook (azure.yaml), because a subscription to a
// function needs the function to exist, and it exists only once the code is deployed.
// Their filters are the ones the app applies (retrainer/filters.py): tests/infra holds the two equal, so most
// events the app would ignore are never delivered, and none it acts on is dropped.
param functionAppName string
param dataSystemTopicName string
param workspaceSystemTopicName string
param workspaceResourceGroup string = resourceGroup().name
param hostAccountName string
param deadLetterContainerName string
param incomingContainerName string = 'incoming'

resource functionApp 'Microsoft.Web/sites@2024-04-01' existing = {
  name: functionAppName
}

resource hostAccount 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: hostAccountName
}

resource dataSystemTopic 'Microsoft.EventGrid/systemTopics@2025-02-15' existing = {
  name: dataSystemTopicName
}

// Subjects of the watched container's blobs: /blobServices/default/containers/<container>/blobs/<name>.
var incomingBlobs = '/blobServices/default/containers/${incomingContainerName}/blobs/'

// BlobCreated of finished, non-empty files in the incoming container, outside Azure ML's own folders.
// (The quarantine container is another container, so its copies never match the subject prefix.)
resource blobEvents 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2025-02-15' = {
  parent: dataSystemTopic
  name: 'retrainer-blob-events'
  properties: {
    destination: {
      endpointType: 'AzureFunction'
      properties: {
        resourceId: '${functionApp.id}/functions/blob_events'
        maxEventsPerBatch: 1
        preferredBatchSizeInKilobytes: 64
      }
    }
    eventDeliverySchema: 'EventGridSchema'
    filter: {
      includedEventTypes: ['Microsoft.Storage.BlobCreated']
      subjectBeginsWith: incomingBlobs
      isSubjectCaseSensitive: true     // as the app compares; advanced filters are always case-insensitive
      advancedFilters: [
        { operatorType: 'StringIn', key: 'data.api', values: ['PutBlob', 'PutBlockList', 'CopyBlob', 'FlushWithClose', 'SftpCommit'] }
        { operatorType: 'NumberGreaterThan', key: 'data.contentLength', value: 0 }
        { operatorType: 'StringNotBeginsWith', key: 'subject', values: ['${incomingBlobs}azureml/'] }
      ]
    }
    retryPolicy: { maxDeliveryAttempts: 30, eventTimeToLiveInMinutes: 1440 }
    deadLetterWithResourceIdentity: {
      identity: { type: 'SystemAssigned' }
      deadLetterDestination: {
        endpointType: 'StorageBlob'
        properties: { resourceId: hostAccount.id, blobContainerName: deadLetterContainerName }
      }
    }
  }
}

module runEvents 'app/run-events.bicep' = {
  name: 'run-events'
  scope: resourceGroup(workspaceResourceGroup)
  params: {
    systemTopicName: workspaceSystemTopicName
    functionId: '${functionApp.id}/functions/ml_events'
    deadLetterAccountId: hostAccount.id
    deadLetterContainerName: deadLetterContainerName
  }
}
