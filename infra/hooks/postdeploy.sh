#!/bin/sh
# azd postdeploy: the function code is published now, so Event Grid can validate the
# AzureFunction endpoints. Run the same deployment again with the subscriptions on.
#
# az does not expand azd's ${NAME=default} placeholders of main.parameters.json, so each
# placeholder's value is passed again here, from the azd environment (azd exports it to hooks).
set -eu

: "${AZURE_RESOURCE_GROUP:?AZURE_RESOURCE_GROUP is not set (run this from azd, or export it)}"
: "${AZURE_ENV_NAME:?AZURE_ENV_NAME is not set (run this from azd, or export it)}"
infra=$(CDPATH= cd -- "$(dirname -- "$0")/.." && pwd)

echo "Creating the Event Grid subscriptions in resource group $AZURE_RESOURCE_GROUP"
az deployment group create \
  --resource-group "$AZURE_RESOURCE_GROUP" \
  --name "$AZURE_ENV_NAME-event-subscriptions" \
  --template-file "$infra/main.bicep" \
  --parameters "$infra/main.parameters.json" \
  --parameters environmentName="$AZURE_ENV_NAME" \
  --parameters networkIsolation="${NETWORK_ISOLATION:-false}" \
  --parameters alertEmail="${ALERT_EMAIL:-}" \
  --parameters batchJobScope="${BATCH_JOB_SCOPE:-file}" \
  --parameters deployEventSubscriptions=true \
  --output none
