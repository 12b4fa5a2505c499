// The two storage accounts, shared keys off (every client signs in with Microsoft Entra ID).
// host: the Functions host (AzureWebJobsStorage), the deployment package, the intake queues, the ledger
//       table and Event Grid's dead letters. data: where data files land, and the quarantine copies.
param hostAccountName string
param dataAccountName string
param deploymentContainerName string
param incomingContainerName string
param quarantineContainerName string
param location string
param tags object

// The intake queues (issue 10): the Event Grid triggers enqueue, the queue triggers work; the host adds
// `<queue>-poison` itself on the fifth failed dequeue.
var queueNames = ['retrainer-blob-events', 'retrainer-run-events']
var ledgerTableName = 'retrainerledger'
var deadLetterContainerName = 'eventgrid-deadletter'

var accountProperties = {
  allowSharedKeyAccess: false
  allowBlobPublicAccess: false
  allowCrossTenantReplication: false
  defaultToOAuthAuthentication: true
  minimumTlsVersion: 'TLS1_2'
  supportsHttpsTrafficOnly: true
  publicNetworkAccess: 'Enabled'
  networkAcls: { defaultAction: 'Allow', bypass: 'AzureServices' }
}

resource hostAccount 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  // checkov:skip=CKV_AZURE_35: the network stays open: Flex Consumption without VNet integration (and Event Grid, azd, a user's upload) reach it over the public endpoint; shared keys are off, so every request needs Entra ID and a role
  // checkov:skip=CKV_AZURE_59: as above: the public endpoint is on, anonymous blob access is off (allowBlobPublicAccess: false)
  // checkov:skip=CKV_AZURE_206: LRS: the ledger is a record reconcile can rebuild from Azure ML, the queues are transient, the package is rebuilt by azd
  // checkov:skip=CKV_AZURE_43: the name is built from a prefix and uniqueString (3-24 lowercase letters and digits); checkov cannot evaluate it
  name: hostAccountName
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: { name: 'Standard_LRS' }
  properties: accountProperties
}

resource hostBlobs 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: hostAccount
  name: 'default'
}

resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: hostBlobs
  name: deploymentContainerName
  properties: { publicAccess: 'None' }
}

resource deadLetterContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: hostBlobs
  name: deadLetterContainerName
  properties: { publicAccess: 'None' }
}

resource hostQueues 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' = {
  parent: hostAccount
  name: 'default'
}

resource queues 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = [for queue in queueNames: {
  parent: hostQueues
  name: queue
}]

resource hostTables 'Microsoft.Storage/storageAccounts/tableServices@2023-05-01' = {
  parent: hostAccount
  name: 'default'
}

resource ledgerTable 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' = {
  parent: hostTables
  name: ledgerTableName
}

resource dataAccount 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  // checkov:skip=CKV_AZURE_35: the network stays open: Flex Consumption without VNet integration (and Event Grid, azd, a user's upload) reach it over the public endpoint; shared keys are off, so every request needs Entra ID and a role
  // checkov:skip=CKV_AZURE_59: as above: the public endpoint is on, anonymous blob access is off (allowBlobPublicAccess: false)
  // checkov:skip=CKV_AZURE_206: LRS: choose ZRS/GRS here if the data files are kept nowhere else
  // checkov:skip=CKV_AZURE_43: the name is built from a prefix and uniqueString (3-24 lowercase letters and digits); checkov cannot evaluate it
  name: dataAccountName
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: { name: 'Standard_LRS' }
  properties: accountProperties
}

resource dataBlobs 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: dataAccount
  name: 'default'
}

resource incomingContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: dataBlobs
  name: incomingContainerName
  properties: { publicAccess: 'None' }
}

resource quarantineContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: dataBlobs
  name: quarantineContainerName
  properties: { publicAccess: 'None' }
}

output hostAccountName string = hostAccount.name
output dataAccountName string = dataAccount.name
output dataBlobEndpoint string = dataAccount.properties.primaryEndpoints.blob
output deploymentContainerName string = deploymentContainer.name
output deadLetterContainerName string = deadLetterContainer.name
output ledgerTableName string = ledgerTable.name
