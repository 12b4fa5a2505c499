// The function app on Flex Consumption (Python 3.11), running as the user-assigned identity.
param name string
param planName string
param location string
param tags object
param identityId string
param identityClientId string
param hostAccountName string
param deploymentContainerName string
param applicationInsightsName string
@description('The RETRAINER_* settings (main.bicep wires them from the other modules\' outputs).')
param retrainerSettings object

resource hostAccount 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: hostAccountName
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  // checkov:skip=CKV_AZURE_225: Flex Consumption: instances are placed by the platform; zone redundancy is a per-region option of the plan, not set here
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: { name: 'FC1', tier: 'FlexConsumption' }
  properties: { reserved: true }
}

resource functionApp 'Microsoft.Web/sites@2024-04-01' = {
  // checkov:skip=CKV_AZURE_222: the public endpoint stays on: Event Grid delivers to the functions and users call the HTTP API over it
  // checkov:skip=CKV_AZURE_17: no client certificates: HTTP routes use function keys, Event Grid delivers with the system key
  // checkov:skip=CKV_AZURE_212: Flex Consumption scales from zero; always-ready instances are a cost choice, and missed events are redelivered by Event Grid and queued
  // checkov:skip=CKV_AZURE_213: App Service health check does not apply to Flex Consumption; GET /api/health reports the app's state
  name: name
  location: location
  tags: union(tags, { 'azd-service-name': 'retrainer' })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: { '${identityId}': {} }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    siteConfig: {
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${hostAccount.properties.primaryEndpoints.blob}${deploymentContainerName}'
          authentication: { type: 'UserAssignedIdentity', userAssignedIdentityResourceId: identityId }
        }
      }
      scaleAndConcurrency: { maximumInstanceCount: 40, instanceMemoryMB: 2048 }
      runtime: { name: 'python', version: '3.11' }
    }
  }
}

// The host's own storage, identity-based: <connection>__accountName/__credential/__clientId
// (https://learn.microsoft.com/azure/azure-functions/functions-reference#connecting-to-host-storage-with-an-identity).
// AZURE_CLIENT_ID makes every DefaultAzureCredential in the app (ledger, data blobs) pick this identity.
resource appSettings 'Microsoft.Web/sites/config@2024-04-01' = {
  // checkov reads this app settings resource as a web app and applies site checks to it; the site above carries
  // the configuration those checks look for, or the reason it does not apply:
  // checkov:skip=CKV_AZURE_13: App Service Authentication does not apply: function keys and Event Grid's system key
  // checkov:skip=CKV_AZURE_63: HTTP logging is an App Service (Windows/IIS) log; Functions log to Application Insights
  // checkov:skip=CKV_AZURE_65: detailed error pages are an App Service (IIS) feature
  // checkov:skip=CKV_AZURE_66: failed request tracing is an App Service (IIS) feature
  // checkov:skip=CKV_AZURE_80: .NET Framework is not used (Python)
  // checkov:skip=CKV_AZURE_88: Azure Files is not used: Flex Consumption runs the package from blob storage
  // checkov:skip=CKV_AZURE_222: the public endpoint stays on (Event Grid delivery, the HTTP API), as on the site
  parent: functionApp
  name: 'appsettings'
  properties: union(retrainerSettings, {
    AzureWebJobsStorage__accountName: hostAccount.name
    AzureWebJobsStorage__credential: 'managedidentity'
    AzureWebJobsStorage__clientId: identityClientId
    AZURE_CLIENT_ID: identityClientId
    APPLICATIONINSIGHTS_CONNECTION_STRING: applicationInsights.properties.ConnectionString
    APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identityClientId};Authorization=AAD'
  })
}

output name string = functionApp.name
output id string = functionApp.id
