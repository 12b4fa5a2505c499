#!/bin/sh
# azd postdeploy hook: subscribe the deployed functions to the data account's and the workspace's events
# (infra/events.bicep). Idempotent: a redeploy updates the subscriptions in place.
set -eu
cd "$(dirname "$0")/../.."
command -v az >/dev/null || { echo "error: the Azure CLI (az) is required for the postdeploy hook; install it and run 'azd hooks run postdeploy'" >&2; exit 2; }
az deployment group create \
  --resource-group "$AZURE_RESOURCE_GROUP" \
  --name retrainer-events \
  --template-file infra/events.bicep \
  --parameters \
    functionAppName="$AZURE_FUNCTION_APP_NAME" \
    dataSystemTopicName="$AZURE_DATA_SYSTEM_TOPIC" \
    workspaceSystemTopicName="$AZURE_WORKSPACE_SYSTEM_TOPIC" \
    workspaceResourceGroup="$RETRAINER_AML_RESOURCE_GROUP" \
    hostAccountName="$AZURE_HOST_STORAGE_ACCOUNT" \
    deadLetterContainerName="$AZURE_DEAD_LETTER_CONTAINER" \
    incomingContainerName="$RETRAINER_INCOMING_CONTAINER" \
  --query "properties.provisioningState" --output tsv
