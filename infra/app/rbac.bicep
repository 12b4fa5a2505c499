// Role assignments in the app's resource group: the least roles that work, each with what needs it.
param appPrincipalId string
@description('The azd user (may be empty): uploads data files.')
param userPrincipalId string
param userPrincipalType string
param hostAccountName string
param dataAccountName string
param incomingContainerName string
param quarantineContainerName string
param deadLetterContainerName string
param applicationInsightsName string
param notifyTopicName string
param dataSystemTopicName string
param workspacePrincipalId string
param computePrincipalId string
param workspaceTopicPrincipalId string

var roles = {
  blobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  blobDataContributor: 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
  blobDataReader: '2a2b9908-6ea1-4ae2-8e65-a410df84e7d1'
  queueDataContributor: '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
  tableDataContributor: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb'
  eventGridDataSender: 'd5a91429-5739-47e2-a06b-3470a27159e7'
}

resource hostAccount 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: hostAccountName
}

resource hostBlobs 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' existing = {
  parent: hostAccount
  name: 'default'
}

resource deadLetterContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = {
  parent: hostBlobs
  name: deadLetterContainerName
}

resource dataAccount 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: dataAccountName
}

resource dataBlobs 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' existing = {
  parent: dataAccount
  name: 'default'
}

resource incomingContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = {
  parent: dataBlobs
  name: incomingContainerName
}

resource quarantineContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = {
  parent: dataBlobs
  name: quarantineContainerName
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource notifyTopic 'Microsoft.EventGrid/topics@2025-02-15' existing = {
  name: notifyTopicName
}

resource dataSystemTopic 'Microsoft.EventGrid/systemTopics@2025-02-15' existing = {
  name: dataSystemTopicName
}

// Host storage. Blob Data Owner: the Functions host (deployment package, timer schedule status and singleton
// lease blobs under azure-webjobs-hosts; Flex Consumption reads the package with this identity).
resource hostBlobOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(hostAccount.id, appPrincipalId, roles.blobDataOwner)
  scope: hostAccount
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.blobDataOwner)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// Queue Data Contributor: the intake queues (Event Grid triggers' queue output bindings, the queue triggers,
// `<queue>-poison`).
resource hostQueueContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(hostAccount.id, appPrincipalId, roles.queueDataContributor)
  scope: hostAccount
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.queueDataContributor)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// Table Data Contributor: the ledger (retrainer.adapters.table_ledger: insert-if-absent claims, updates).
resource hostTableContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(hostAccount.id, appPrincipalId, roles.tableDataContributor)
  scope: hostAccount
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.tableDataContributor)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// Data account, incoming container. Blob Data Reader: the app reads a file's properties and a bounded prefix,
// lists the timer's dataset folder, and reads the source of a quarantine copy. No Owner: no blob trigger (the
// Event Grid trigger takes the event; no blob receipts are written here).
resource incomingReaderApp 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(incomingContainer.id, appPrincipalId, roles.blobDataReader)
  scope: incomingContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.blobDataReader)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// Blob Data Reader for Azure ML: the credential-less datastore reads as the compute cluster's identity in a job
// (the DataPath mount) and as the workspace's identity in studio.
resource incomingReaderWorkspace 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(workspacePrincipalId)) {
  name: guid(incomingContainer.id, workspacePrincipalId, roles.blobDataReader)
  scope: incomingContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.blobDataReader)
    principalId: workspacePrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource incomingReaderCompute 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(computePrincipalId)) {
  name: guid(incomingContainer.id, computePrincipalId, roles.blobDataReader)
  scope: incomingContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.blobDataReader)
    principalId: computePrincipalId
    principalType: 'ServicePrincipal'
  }
}

// Quarantine container. Blob Data Contributor: the app copies rejected files here with the reason in metadata
// (and creates the container if it is missing). Nothing here can be deleted from the incoming container.
resource quarantineContributorApp 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(quarantineContainer.id, appPrincipalId, roles.blobDataContributor)
  scope: quarantineContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.blobDataContributor)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// The azd user uploads data files (az storage blob upload --auth-mode login) and reads the quarantine copies.
resource dataContributorUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(userPrincipalId)) {
  name: guid(dataAccount.id, userPrincipalId, roles.blobDataContributor)
  scope: dataAccount
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.blobDataContributor)
    principalId: userPrincipalId
    principalType: userPrincipalType
  }
}

// Dead letters: each system topic writes the events it gave up on (events.bicep, deadLetterWithResourceIdentity).
resource deadLetterDataTopic 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(deadLetterContainer.id, dataSystemTopic.id, roles.blobDataContributor)
  scope: deadLetterContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.blobDataContributor)
    principalId: dataSystemTopic.identity.principalId
    principalType: 'ServicePrincipal'
  }
}

resource deadLetterWorkspaceTopic 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(deadLetterContainer.id, workspaceTopicPrincipalId, roles.blobDataContributor)
  scope: deadLetterContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.blobDataContributor)
    principalId: workspaceTopicPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// Monitoring Metrics Publisher: telemetry to Application Insights, whose local (key) auth is off.
resource telemetryPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(applicationInsights.id, appPrincipalId, roles.monitoringMetricsPublisher)
  scope: applicationInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.monitoringMetricsPublisher)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// EventGrid Data Sender: the app publishes notifications to the topic with its identity (no topic key).
resource notifySender 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(notifyTopic.id, appPrincipalId, roles.eventGridDataSender)
  scope: notifyTopic
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.eventGridDataSender)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}
