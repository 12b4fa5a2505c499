#!/bin/sh
# azd hook: `python -m retrainer publish` with the publishing requirements (azureml-pipeline-steps), in a venv
# of its own so the deployed package stays lean. azd passes its environment's values (the Bicep outputs:
# RETRAINER_AML_*, RETRAINER_DATASTORE, ...) as environment variables; the hook signs in as the azd user.
set -eu
cd "$(dirname "$0")/../.."
VENV=.venv-publish
PYTHON=${PYTHON:-python3.11}
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r requirements-publish.txt
if [ "${1:-}" = "--offline" ]; then
  # Before provisioning (the first `azd up`) there is no workspace yet: the version needs none.
  exec "$VENV/bin/python" -m retrainer publish --offline
fi
# The backend azd's environment chose (azd env set RETRAINER_BACKEND azureml_v2), else SDK v1.
RETRAINER_BACKEND=${RETRAINER_BACKEND:-azureml} RETRAINER_AML_AUTH=cli exec "$VENV/bin/python" -m retrainer publish "$@"
