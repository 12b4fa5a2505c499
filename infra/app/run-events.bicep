// The workspace's run events to the app's ml_events function: RunCompleted, and RunStatusChanged to a final
// status only (RunStatusChanged fires for every status).
//
// Two subscriptions, because RunCompleted carries no data.runStatus, and Event Grid evaluates StringIn on a key
// the event lacks as "not matched" (only NumberNotIn and StringNotIn match a missing key):
// https://learn.microsoft.com/azure/event-grid/event-filtering#advanced-filtering
// One subscription with `data.runStatus StringIn [final]` would drop every RunCompleted; one with
// `StringNotIn [non-final]` would pass statuses Azure ML adds later. So RunCompleted goes unfiltered, and
// RunStatusChanged goes through `StringIn` the final statuses (retrainer.filters.FINAL_RUN_STATUSES).
param systemTopicName string
param functionId string
param deadLetterAccountId string
param deadLetterContainerName string

resource systemTopic 'Microsoft.EventGrid/systemTopics@2025-02-15' existing = {
  name: systemTopicName
}

var destination = {
  endpointType: 'AzureFunction'
  properties: { resourceId: functionId, maxEventsPerBatch: 1, preferredBatchSizeInKilobytes: 64 }
}
var retryPolicy = { maxDeliveryAttempts: 30, eventTimeToLiveInMinutes: 1440 }
var deadLetter = {
  identity: { type: 'SystemAssigned' }
  deadLetterDestination: {
    endpointType: 'StorageBlob'
    properties: { resourceId: deadLetterAccountId, blobContainerName: deadLetterContainerName }
  }
}

resource runCompleted 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2025-02-15' = {
  parent: systemTopic
  name: 'retrainer-run-completed'
  properties: {
    destination: destination
    eventDeliverySchema: 'EventGridSchema'
    filter: {
      includedEventTypes: ['Microsoft.MachineLearningServices.RunCompleted']
    }
    retryPolicy: retryPolicy
    deadLetterWithResourceIdentity: deadLetter
  }
}

resource runStatusFinal 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2025-02-15' = {
  parent: systemTopic
  name: 'retrainer-run-status-final'
  properties: {
    destination: destination
    eventDeliverySchema: 'EventGridSchema'
    filter: {
      includedEventTypes: ['Microsoft.MachineLearningServices.RunStatusChanged']
      advancedFilters: [
        { operatorType: 'StringIn', key: 'data.runStatus', values: ['Canceled', 'Completed', 'Failed'] }
      ]
    }
    retryPolicy: retryPolicy
    deadLetterWithResourceIdentity: deadLetter
  }
}
