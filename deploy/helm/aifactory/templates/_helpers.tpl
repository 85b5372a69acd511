{{/*
What each service is, beside its values: which setting names which other service it calls
(a caller gets a token), whether it keeps state in its own SQL database, which of its
settings name paths on its own volume (a StatefulSet then), whether it hashes personal
fields (the privacy salt). The settings classes (services/<name>/settings.py) are the reference:
tests/integration/test_deploy_manifests.py checks every AIF_ variable rendered here.
*/}}
{{- define "aif.catalog" -}}
ingestion:
  calls: {}
  sql: false
  salt: true
  state: {DATA_DIR: raw}
  podEnv: {INSTANCE_ID: metadata.name}
featurestore:
  calls: {}
  sql: false
  salt: false
  state: {DATA_DIR: offline, FEAST_REPO: feast}
trainer:
  calls: {FEATURESTORE_TARGET: featurestore, REGISTRY_TARGET: registry, MONITOR_TARGET: monitor}
  sql: true
  salt: false
  state: {}
evaluator:
  calls: {FEATURESTORE_TARGET: featurestore, REGISTRY_TARGET: registry}
  sql: true
  salt: false
  state: {}
registry:
  calls: {EVALUATOR_TARGET: evaluator, MONITOR_TARGET: monitor}
  sql: true
  salt: false
  state: {ARTIFACT_ROOT: artifacts, EXPORT_ROOT: exports, AUDIT_CHECKPOINT_KEY: keys/audit-checkpoint.key}
gateway:
  calls: {FEATURESTORE_TARGET: featurestore, REGISTRY_TARGET: registry}
  sql: false
  salt: true
  state: {PREDLOG_WAL_DIR: predlog}
monitor:
  calls: {REGISTRY_TARGET: registry}
  sql: true
  salt: false
  state: {}
{{- end -}}

{{- define "aif.name" -}}
{{- printf "%s-%s" .root.Release.Name .name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "aif.labels" -}}
app.kubernetes.io/name: {{ .name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/part-of: aifactory
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version }}
{{- end -}}

{{- define "aif.selector" -}}
app.kubernetes.io/name: {{ .name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- end -}}

{{- define "aif.kafkaBootstrap" -}}
{{- if .Values.kafka.strimzi.enabled -}}
{{- printf "%s-kafka-bootstrap:9092" .Release.Name -}}
{{- else -}}
{{- required "kafka.bootstrap is required (or kafka.strimzi.enabled)" .Values.kafka.bootstrap -}}
{{- end -}}
{{- end -}}

{{- define "aif.tritonUrl" -}}
{{- if .Values.triton.enabled -}}
{{- printf "%s-triton:8001" .Release.Name -}}
{{- else -}}
{{- required "triton.url is required when triton.enabled is false" .Values.triton.url -}}
{{- end -}}
{{- end -}}

{{/* The Secret holding Triton's model-control key (key `control-key`): mounted by Triton
and the gateway only. Empty when there is none (an external Triton without one). */}}
{{- define "aif.tritonControlSecret" -}}
{{- if .Values.triton.existingControlKeySecret -}}
{{ .Values.triton.existingControlKeySecret }}
{{- else if or .Values.triton.enabled .Values.triton.controlKey -}}
{{ include "aif.name" (dict "root" . "name" "triton-control") }}
{{- end -}}
{{- end -}}

{{/* The name of the Secret holding service .name's token. */}}
{{- define "aif.tokenSecret" -}}
{{- $existing := index .root.Values.auth.existingTokenSecrets .name | default "" -}}
{{- if $existing -}}{{ $existing }}{{- else -}}{{ include "aif.name" . }}{{- end -}}
{{- end -}}
