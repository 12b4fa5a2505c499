// The Azure ML side, in the workspace's resource group: the workspace (new, or an existing one by name), its
// datastore on the incoming container, the compute cluster (new, or an existing one by name) and the
// workspace's Event Grid system topic.
param createWorkspace bool
param workspaceName string
param workspaceStorageName string
param keyVaultName string
param applicationInsightsId string
param systemTopicName string
param createComputeCluster bool
param computeClusterName string
param computeVmSize string
param computeMaxNodes int
param datastoreName string
param dataAccountName string
param incomingContainerName string
param location string
param tags object

module created 'workspace-new.bicep' = if (createWorkspace) {
  name: 'workspace-new'
  params: {
    workspaceName: workspaceName
    workspaceStorageName: workspaceStorageName
    keyVaultName: keyVaultName
    applicationInsightsId: applicationInsightsId
    location: location
    tags: tags
  }
}

resource workspace 'Microsoft.MachineLearningServices/workspaces@2024-10-01' existing = {
  name: workspaceName
}

// Credential-less: Azure ML reads the data as the compute's identity (jobs) or the workspace's (studio).
resource datastore 'Microsoft.MachineLearningServices/workspaces/datastores@2024-10-01' = {
  parent: workspace
  name: datastoreName
  dependsOn: [created]
  properties: {
    datastoreType: 'AzureBlob'
    accountName: dataAccountName
    containerName: incomingContainerName
    endpoint: environment().suffixes.storage
    protocol: 'https'
    credentials: { credentialsType: 'None' }
    serviceDataAccessAuthIdentity: 'WorkspaceSystemAssignedIdentity'
  }
}

module compute 'compute.bicep' = if (createComputeCluster) {
  name: 'compute'
  dependsOn: [created]
  params: {
    workspaceName: workspaceName
    name: computeClusterName
    vmSize: computeVmSize
    maxNodes: computeMaxNodes
    location: location
  }
}

resource existingCompute 'Microsoft.MachineLearningServices/workspaces/computes@2024-10-01' existing = {
  parent: workspace
  name: computeClusterName
}

// RunCompleted / RunStatusChanged come from here; events.bicep subscribes the app's ml_events function.
resource systemTopic 'Microsoft.EventGrid/systemTopics@2025-02-15' = {
  name: systemTopicName
  location: createWorkspace ? location : workspace.location      // a system topic lives in its source's region
  tags: tags
  identity: { type: 'SystemAssigned' }     // writes dead letters to the host account
  dependsOn: [created]
  properties: {
    source: workspace.id
    topicType: 'Microsoft.MachineLearningServices.Workspaces'
  }
}

output workspaceName string = workspace.name
output workspacePrincipalId string = workspace.identity.?principalId ?? ''
output computePrincipalId string = createComputeCluster ? compute.outputs.principalId : (existingCompute.identity.?principalId ?? '')
output systemTopicName string = systemTopic.name
output systemTopicPrincipalId string = systemTopic.identity.principalId
