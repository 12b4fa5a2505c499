// `azd up`: every Azure resource of the retraining loop. The Event Grid subscriptions are the one exception:
// they point at functions that exist only after the code is deployed, so the postdeploy hook deploys
// events.bicep (see azure.yaml).
targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('azd environment name: names the resource group and seeds the unique resource names.')
param environmentName string

@minLength(1)
@description('Region of every resource (a new workspace too).')
@metadata({ azd: { type: 'location' } })
param location string

@description('Object id of whoever runs azd: may upload data and read the quarantine copies (empty: no role).')
param principalId string = ''

@allowed(['User', 'ServicePrincipal'])
@description('What principalId is: a user, or a service principal (azd in CI).')
param principalType string = 'User'

@description('Reuse this Azure ML workspace instead of creating one (empty: create one).')
param existingWorkspaceName string = ''

@description('Resource group of the existing workspace (empty: the one created here).')
param existingWorkspaceResourceGroup string = ''

@description('Name of the Event Grid system topic of the workspace. Azure allows one per source: with an existing workspace that already has one, give its name.')
param workspaceSystemTopicName string = ''

@description('Create the compute cluster; false: use an existing cluster named computeClusterName in the workspace.')
param createComputeCluster bool = true

@description('Azure ML compute cluster the pipeline steps run on (RETRAINER_COMPUTE_TARGET).')
param computeClusterName string = 'cpu-cluster'

param computeVmSize string = 'STANDARD_DS3_V2'

@minValue(1)
param computeMaxNodes int = 2

@description('Container the data files land in; its BlobCreated events start a training.')
param incomingContainerName string = 'incoming'

@description('Container rejected files are copied to (never the incoming container: its copies would be watched).')
param quarantineContainerName string = 'quarantine'

@description('Azure ML datastore on the incoming container (RETRAINER_DATASTORE).')
param datastoreName string = 'training_data'

@description('Azure ML SDK the functions use (RETRAINER_BACKEND): azureml (v1) or azureml_v2. The package must carry that SDK: requirements.txt (v1) or requirements-v2.txt copied over it (README, Running on SDK v2).')
@allowed(['azureml', 'azureml_v2'])
param mlBackend string = 'azureml'

@description('Pipeline definition in pipeline_defs/ (RETRAINER_PIPELINE).')
param pipelineName string = 'diabetes_training'

@description('Azure ML PipelineEndpoint the pipeline is published behind (RETRAINER_PIPELINE_ENDPOINT).')
param pipelineEndpointName string = 'diabetes-training'

@description('Experiment the runs are submitted to (RETRAINER_EXPERIMENT).')
param experimentName string = 'diabetes-retraining'

@description('NCRONTAB (seconds first) of the scheduled retrain (RETRAINER_SCHEDULE).')
param retrainSchedule string = '0 0 2 * * *'

@description('NCRONTAB of the reconcile sweep (RETRAINER_RECONCILE_SCHEDULE).')
param reconcileSchedule string = '0 */15 * * * *'

var tags = { 'azd-env-name': environmentName }
var token = toLower(uniqueString(subscription().id, environmentName, location))
var useExistingWorkspace = !empty(existingWorkspaceName)
var workspaceName = useExistingWorkspace ? existingWorkspaceName : 'mlw-${token}'

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: 'rg-${environmentName}'
  location: location
  tags: tags
}

var workspaceResourceGroupName = useExistingWorkspace && !empty(existingWorkspaceResourceGroup) ? existingWorkspaceResourceGroup : rg.name

module identity 'app/identity.bicep' = {
  name: 'identity'
  scope: rg
  params: { name: 'id-retrainer-${token}', location: location, tags: tags }
}

module monitoring 'app/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: { logAnalyticsName: 'log-${token}', applicationInsightsName: 'appi-${token}', location: location, tags: tags }
}

module storage 'app/storage.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    hostAccountName: 'sthost${token}'
    dataAccountName: 'stdata${token}'
    deploymentContainerName: 'app-package-${token}'
    incomingContainerName: incomingContainerName
    quarantineContainerName: quarantineContainerName
    location: location
    tags: tags
  }
}

module workspace 'app/workspace.bicep' = {
  name: 'workspace'
  scope: resourceGroup(workspaceResourceGroupName)
  dependsOn: [rg]
  params: {
    createWorkspace: !useExistingWorkspace
    workspaceName: workspaceName
    workspaceStorageName: 'stml${token}'
    keyVaultName: 'kv-${token}'
    applicationInsightsId: monitoring.outputs.applicationInsightsId
    systemTopicName: !empty(workspaceSystemTopicName) ? workspaceSystemTopicName : 'evgt-mlw-${token}'
    createComputeCluster: createComputeCluster
    computeClusterName: computeClusterName
    computeVmSize: computeVmSize
    computeMaxNodes: computeMaxNodes
    datastoreName: datastoreName
    dataAccountName: storage.outputs.dataAccountName
    incomingContainerName: incomingContainerName
    location: location
    tags: tags
  }
}

module eventing 'app/eventing.bicep' = {
  name: 'eventing'
  scope: rg
  params: {
    dataAccountName: storage.outputs.dataAccountName
    dataSystemTopicName: 'evgt-data-${token}'
    notifyTopicName: 'evgt-notify-${token}'
    location: location
    tags: tags
  }
}

module function 'app/function.bicep' = {
  name: 'function'
  scope: rg
  params: {
    name: 'func-retrainer-${token}'
    planName: 'plan-${token}'
    location: location
    tags: tags
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    hostAccountName: storage.outputs.hostAccountName
    deploymentContainerName: storage.outputs.deploymentContainerName
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    // Identity-based connections and the loop's wiring: no key or secret in any setting.
    retrainerSettings: {
      RETRAINER_BACKEND: mlBackend
      RETRAINER_DATA_STORAGE__serviceUri: storage.outputs.dataBlobEndpoint
      RETRAINER_DATA_STORAGE__credential: 'managedidentity'
      RETRAINER_DATA_STORAGE__clientId: identity.outputs.clientId
      RETRAINER_INCOMING_PATH: '${incomingContainerName}/{name}'
      RETRAINER_QUARANTINE_CONTAINER: quarantineContainerName
      RETRAINER_LEDGER_TABLE: storage.outputs.ledgerTableName
      RETRAINER_PIPELINE: pipelineName
      RETRAINER_PIPELINE_ENDPOINT: pipelineEndpointName
      RETRAINER_EXPERIMENT: experimentName
      // The timers' %RETRAINER_SCHEDULE% binding expressions: the host cannot index a timer whose setting is unset.
      RETRAINER_SCHEDULE: retrainSchedule
      RETRAINER_RECONCILE_SCHEDULE: reconcileSchedule
      RETRAINER_DATASTORE: datastoreName
      RETRAINER_COMPUTE_TARGET: computeClusterName
      RETRAINER_AML_SUBSCRIPTION_ID: subscription().subscriptionId
      RETRAINER_AML_RESOURCE_GROUP: workspaceResourceGroupName
      RETRAINER_AML_WORKSPACE: workspaceName
      RETRAINER_AML_AUTH: 'msi'
      RETRAINER_AML_CLIENT_ID: identity.outputs.clientId
      RETRAINER_NOTIFY_TOPIC_ENDPOINT: eventing.outputs.notifyTopicEndpoint
    }
  }
}

module rbac 'app/rbac.bicep' = {
  name: 'rbac'
  scope: rg
  params: {
    appPrincipalId: identity.outputs.principalId
    userPrincipalId: principalId
    userPrincipalType: principalType
    hostAccountName: storage.outputs.hostAccountName
    dataAccountName: storage.outputs.dataAccountName
    incomingContainerName: incomingContainerName
    quarantineContainerName: quarantineContainerName
    deadLetterContainerName: storage.outputs.deadLetterContainerName
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    notifyTopicName: eventing.outputs.notifyTopicName
    dataSystemTopicName: eventing.outputs.dataSystemTopicName
    workspacePrincipalId: workspace.outputs.workspacePrincipalId
    computePrincipalId: workspace.outputs.computePrincipalId
    workspaceTopicPrincipalId: workspace.outputs.systemTopicPrincipalId
  }
}

// The workspace may live in another resource group: its roles are granted there.
module workspaceRbac 'app/workspace-rbac.bicep' = {
  name: 'workspace-rbac'
  scope: resourceGroup(workspaceResourceGroupName)
  dependsOn: [rg]
  params: {
    appPrincipalId: identity.outputs.principalId
    workspaceName: workspace.outputs.workspaceName
  }
}

// azd stores these in the environment: the hooks read them (publish, events.bicep), and so can a user.
output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_APP_NAME string = function.outputs.name
output AZURE_DATA_STORAGE_ACCOUNT string = storage.outputs.dataAccountName
output AZURE_HOST_STORAGE_ACCOUNT string = storage.outputs.hostAccountName
output AZURE_DATA_SYSTEM_TOPIC string = eventing.outputs.dataSystemTopicName
output AZURE_WORKSPACE_SYSTEM_TOPIC string = workspace.outputs.systemTopicName
output AZURE_DEAD_LETTER_CONTAINER string = storage.outputs.deadLetterContainerName
output RETRAINER_AML_SUBSCRIPTION_ID string = subscription().subscriptionId
output RETRAINER_AML_RESOURCE_GROUP string = workspaceResourceGroupName
output RETRAINER_AML_WORKSPACE string = workspace.outputs.workspaceName
output RETRAINER_DATASTORE string = datastoreName
output RETRAINER_COMPUTE_TARGET string = computeClusterName
output RETRAINER_PIPELINE string = pipelineName
output RETRAINER_PIPELINE_ENDPOINT string = pipelineEndpointName
output RETRAINER_INCOMING_CONTAINER string = incomingContainerName
output RETRAINER_QUARANTINE_CONTAINER string = quarantineContainerName
