// Event Grid topics in the app's resource group: the data account's system topic (BlobCreated) and the
// notification topic the app publishes to. The workspace's system topic is in workspace.bicep.
param dataAccountName string
param dataSystemTopicName string
param notifyTopicName string
param location string
param tags object

resource dataAccount 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: dataAccountName
}

resource dataSystemTopic 'Microsoft.EventGrid/systemTopics@2025-02-15' = {
  name: dataSystemTopicName
  location: location
  tags: tags
  identity: { type: 'SystemAssigned' }     // writes dead letters to the host account
  properties: {
    source: dataAccount.id
    topicType: 'Microsoft.Storage.StorageAccounts'
  }
}

// Notifications: the app posts CloudEvents 1.0 (azure-eventgrid sends application/cloudevents-batch+json, which
// a topic with the default EventGridSchema input rejects). Keys off: the app signs in with its identity
// (role EventGrid Data Sender, rbac.bicep). Subscribe your receivers to this topic.
resource notifyTopic 'Microsoft.EventGrid/topics@2025-02-15' = {
  // checkov:skip=CKV_AZURE_193: the public endpoint stays on: Flex Consumption without VNet integration publishes over it; local (key) auth is off
  // checkov:skip=CKV_AZURE_191: the topic delivers to receivers you subscribe; give it an identity when a destination needs one
  name: notifyTopicName
  location: location
  tags: tags
  properties: {
    inputSchema: 'CloudEventSchemaV1_0'
    disableLocalAuth: true
    publicNetworkAccess: 'Enabled'
  }
}

output dataSystemTopicName string = dataSystemTopic.name
output notifyTopicName string = notifyTopic.name
output notifyTopicEndpoint string = notifyTopic.properties.endpoint
