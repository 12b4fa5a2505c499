// The compute cluster the pipeline steps run on: scales to zero between trainings.
param workspaceName string
param name string
param vmSize string
param maxNodes int
param location string

resource workspace 'Microsoft.MachineLearningServices/workspaces@2024-10-01' existing = {
  name: workspaceName
}

resource compute 'Microsoft.MachineLearningServices/workspaces/computes@2024-10-01' = {
  parent: workspace
  name: name
  location: location
  identity: { type: 'SystemAssigned' }     // reads the incoming container (rbac.bicep)
  properties: {
    computeType: 'AmlCompute'
    disableLocalAuth: true
    properties: {
      vmSize: vmSize
      vmPriority: 'Dedicated'
      osType: 'Linux'
      scaleSettings: { minNodeCount: 0, maxNodeCount: maxNodes, nodeIdleTimeBeforeScaleDown: 'PT15M' }
      remoteLoginPortPublicAccess: 'Disabled'
    }
  }
}

output principalId string = compute.identity.principalId
