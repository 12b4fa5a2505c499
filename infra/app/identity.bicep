// The function app's user-assigned identity: every connection the app makes (host storage, data account,
// Azure ML, the notification topic, Application Insights) authenticates as it.
param name string
param location string
param tags object

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: name
  location: location
  tags: tags
}

output id string = identity.id
output clientId string = identity.properties.clientId
output principalId string = identity.properties.principalId
