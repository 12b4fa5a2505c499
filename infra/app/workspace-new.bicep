// A new Azure ML workspace with its own storage and key vault (Application Insights is the app's).
param workspaceName string
param workspaceStorageName string
param keyVaultName string
param applicationInsightsId string
param location string
param tags object

// The workspace's own storage: run snapshots, logs, outputs, and the PipelineData intermediates (on the
// workspace's default datastore, never the incoming container's datastore: a step output there would fire
// BlobCreated and start another run).
resource workspaceStorage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  // checkov:skip=CKV_AZURE_35: Azure ML compute and studio reach it over the public endpoint in a workspace without a VNet
  // checkov:skip=CKV_AZURE_206: LRS, as Azure ML creates its workspace storage by default: it holds run artefacts
  // checkov:skip=CKV_AZURE_43: the name is built from a prefix and uniqueString (3-24 lowercase letters and digits); checkov cannot evaluate it
  name: workspaceStorageName
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: { name: 'Standard_LRS' }
  properties: {
    allowBlobPublicAccess: false
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
  }
}

resource keyVault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  // checkov:skip=CKV_AZURE_109: Azure ML reaches its key vault over the public endpoint in a workspace without a VNet
  // checkov:skip=CKV_AZURE_189: public network access stays on for the same reason (no VNet in this template)
  // checkov:skip=CKV_AZURE_42: soft delete is on (deleted secrets are recoverable for 90 days); purge protection stays off, see CKV_AZURE_110
  // checkov:skip=CKV_AZURE_110: no purge protection, so `azd down --purge` can purge it and `azd up` recreate the environment under the same name (it cannot be turned off once on); it holds only Azure ML's own workspace secrets
  name: keyVaultName
  location: location
  tags: tags
  properties: {
    tenantId: tenant().tenantId
    sku: { family: 'A', name: 'standard' }
    // Access policies: Azure ML adds the workspace's own when it creates the workspace.
    enableRbacAuthorization: false
    accessPolicies: []
    enableSoftDelete: true
  }
}

resource workspace 'Microsoft.MachineLearningServices/workspaces@2024-10-01' = {
  // checkov:skip=CKV_AZURE_243: no VNet in this template: the function app (Flex Consumption without VNet integration) calls the workspace over its public endpoint
  name: workspaceName
  location: location
  tags: tags
  identity: { type: 'SystemAssigned' }
  sku: { name: 'Basic', tier: 'Basic' }
  properties: {
    friendlyName: workspaceName
    storageAccount: workspaceStorage.id
    keyVault: keyVault.id
    applicationInsights: applicationInsightsId
    publicNetworkAccess: 'Enabled'
  }
}
