{{/*
Chart name, truncated to the 63 characters of a DNS label.
*/}}
{{- define "scanfleet.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified app name: the release name, with the chart name unless it already holds it.
*/}}
{{- define "scanfleet.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "scanfleet.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Common labels.
*/}}
{{- define "scanfleet.labels" -}}
helm.sh/chart: {{ include "scanfleet.chart" . }}
{{ include "scanfleet.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: scanfleet
{{- end }}

{{- define "scanfleet.selectorLabels" -}}
app.kubernetes.io/name: {{ include "scanfleet.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Labels of the ingest workload and of what selects it.
*/}}
{{- define "scanfleet.ingest.labels" -}}
{{ include "scanfleet.labels" . }}
app.kubernetes.io/component: ingest
{{- end }}

{{- define "scanfleet.ingest.selectorLabels" -}}
{{ include "scanfleet.selectorLabels" . }}
app.kubernetes.io/component: ingest
{{- end }}

{{- define "scanfleet.ingest.fullname" -}}
{{- printf "%s-ingest" (include "scanfleet.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "scanfleet.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion | toString) }}
{{- end }}

{{/*
Secrets holding the connection URLs: the chart's own Secret when the URL is given
inline, else the existing Secret named in the values.
*/}}
{{- define "scanfleet.database.secretName" -}}
{{- if .Values.database.url }}
{{- include "scanfleet.fullname" . }}
{{- else }}
{{- .Values.database.existingSecret }}
{{- end }}
{{- end }}

{{- define "scanfleet.database.secretKey" -}}
{{- if .Values.database.url }}database-url{{ else }}{{ .Values.database.existingSecretKey | default "database-url" }}{{ end }}
{{- end }}

{{- define "scanfleet.broker.secretName" -}}
{{- if .Values.broker.url }}
{{- include "scanfleet.fullname" . }}
{{- else }}
{{- .Values.broker.existingSecret }}
{{- end }}
{{- end }}

{{- define "scanfleet.broker.secretKey" -}}
{{- if .Values.broker.url }}broker-url{{ else }}{{ .Values.broker.existingSecretKey | default "broker-url" }}{{ end }}
{{- end }}

{{/*
The migration hook runs before the release's own resources exist, so an inline
database URL reaches it through a Secret that is itself a hook.
*/}}
{{- define "scanfleet.migrate.secretName" -}}
{{- if .Values.database.url }}
{{- printf "%s-migrate" (include "scanfleet.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- .Values.database.existingSecret }}
{{- end }}
{{- end }}

{{/*
Fail early, with the value to set, rather than deploy pods that cannot start.
*/}}
{{- define "scanfleet.validateValues" -}}
{{- if and (not .Values.database.url) (not .Values.database.existingSecret) }}
{{- fail "scanfleet: set database.url (postgresql://...) or database.existingSecret" }}
{{- end }}
{{- if and .Values.database.url (not (or (hasPrefix "postgresql://" .Values.database.url) (hasPrefix "postgres://" .Values.database.url) (hasPrefix "postgresql+psycopg://" .Values.database.url))) }}
{{- fail "scanfleet: database.url must be a postgresql:// URL" }}
{{- end }}
{{- if and (not .Values.broker.url) (not .Values.broker.existingSecret) }}
{{- fail "scanfleet: set broker.url (amqp://...) or broker.existingSecret" }}
{{- end }}
{{- if and .Values.broker.url (not (or (hasPrefix "amqp://" .Values.broker.url) (hasPrefix "amqps://" .Values.broker.url))) }}
{{- fail "scanfleet: broker.url must be an amqp:// or amqps:// URL" }}
{{- end }}
{{- end }}

{{/*
Volumes every scanfleet container needs with a read-only root file system: /tmp holds
the per-process Prometheus metric files of ingest's consumer processes.
*/}}
{{- define "scanfleet.volumes" -}}
- name: tmp
  emptyDir:
    sizeLimit: 256Mi
{{- end }}

{{- define "scanfleet.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
{{- end }}

{{/*
Coordinator and worker names and labels. A worker group's name: call with
(dict "ctx" $ "name" "standard"); a component's labels: (dict "ctx" $ "component" "worker").
*/}}
{{- define "scanfleet.coordinator.fullname" -}}
{{- printf "%s-coordinator" (include "scanfleet.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "scanfleet.worker.fullname" -}}
{{- printf "%s-worker-%s" (include "scanfleet.fullname" .ctx) .name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "scanfleet.componentLabels" -}}
{{ include "scanfleet.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "scanfleet.componentSelectorLabels" -}}
{{ include "scanfleet.selectorLabels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/*
The config file (SCANFLEET_CONFIG): the ConfigMap, where it is mounted, and its text,
from `configToml` as given or `config` rendered to TOML.
*/}}
{{- define "scanfleet.config.name" -}}
{{- printf "%s-config" (include "scanfleet.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "scanfleet.config.dir" -}}/etc/scanfleet{{- end }}

{{- define "scanfleet.config.path" -}}/etc/scanfleet/scanfleet.toml{{- end }}

{{- define "scanfleet.config.toml" -}}
{{- if and .Values.config .Values.configToml }}
{{- fail "scanfleet: set either config (a structure) or configToml (TOML text), not both" }}
{{- end }}
{{- if .Values.configToml }}
{{- .Values.configToml }}
{{- else if .Values.config }}
{{- toToml .Values.config }}
{{- end }}
{{- end }}

{{- define "scanfleet.configVolume" -}}
- name: config
  configMap:
    name: {{ include "scanfleet.config.name" . }}
{{- end }}

{{/*
A directory mount, not a subPath: kubelet then updates the file in place as well.
*/}}
{{- define "scanfleet.configVolumeMount" -}}
- name: config
  mountPath: {{ include "scanfleet.config.dir" . }}
  readOnly: true
{{- end }}

{{/*
Environment every scanfleet service shares (ingest, coordinator, workers): where
PostgreSQL, RabbitMQ and the config file are, the findings exchange, the scope and the
broker's consumer timeout on the task queues. SCANFLEET_SCOPE is set only when `scope`
is given: it replaces the config file's [scope] allow list.
*/}}
{{- define "scanfleet.commonEnv" -}}
- name: SCANFLEET_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "scanfleet.database.secretName" . }}
      key: {{ include "scanfleet.database.secretKey" . }}
- name: SCANFLEET_BROKER_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "scanfleet.broker.secretName" . }}
      key: {{ include "scanfleet.broker.secretKey" . }}
- name: SCANFLEET_FINDINGS_EXCHANGE
  value: {{ .Values.broker.findingsExchange | quote }}
- name: SCANFLEET_BROKER_CONSUMER_TIMEOUT_S
  value: {{ .Values.broker.consumerTimeoutS | int | quote }}
- name: SCANFLEET_CONFIG
  value: {{ include "scanfleet.config.path" . | quote }}
{{- with .Values.scope }}
- name: SCANFLEET_SCOPE
  value: {{ join "," . | quote }}
{{- end }}
{{- end }}

{{/*
The artifact store of the workers: a PersistentVolumeClaim when persistence is
enabled (shared by every worker pod, so ReadWriteMany), else an emptyDir per pod.
*/}}
{{- define "scanfleet.artifacts.claimName" -}}
{{- if .Values.artifacts.persistence.existingClaim }}
{{- .Values.artifacts.persistence.existingClaim }}
{{- else }}
{{- printf "%s-artifacts" (include "scanfleet.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "scanfleet.artifacts.volume" -}}
- name: artifacts
{{- if .Values.artifacts.persistence.enabled }}
  persistentVolumeClaim:
    claimName: {{ include "scanfleet.artifacts.claimName" . }}
{{- else }}
  emptyDir:
    sizeLimit: {{ .Values.artifacts.emptyDirSizeLimit }}
{{- end }}
{{- end }}

{{/*
Worker values the template cannot work without, checked before anything is rendered:
the artifact store must be on the artifacts volume (the root file system is read-only),
and every worker group needs a DNS-label name and known pools and budget classes.
*/}}
{{- define "scanfleet.validateWorkerValues" -}}
{{- $url := .Values.artifacts.url }}
{{- if not $url }}
{{- fail "scanfleet: set artifacts.url (file:///var/lib/scanfleet/artifacts): the default under $HOME is on the read-only root file system" }}
{{- end }}
{{- if or (hasPrefix "file://" $url) (hasPrefix "/" $url) }}
{{- $path := trimPrefix "file://" $url }}
{{- $mount := trimSuffix "/" .Values.artifacts.mountPath }}
{{- if not (or (eq $path $mount) (hasPrefix (printf "%s/" $mount) $path)) }}
{{- fail (printf "scanfleet: artifacts.url %s is not under artifacts.mountPath %s, the only writable place for artifacts" $url $mount) }}
{{- end }}
{{- end }}
{{- range $w := .Values.workers }}
{{- if not (regexMatch "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$" (toString $w.name)) }}
{{- fail (printf "scanfleet: workers[].name %q must be a DNS label (lower-case letters, digits, -)" (toString $w.name)) }}
{{- end }}
{{- range $p := $w.pools }}
{{- if not (has $p (list "default" "network" "web")) }}
{{- fail (printf "scanfleet: worker %s: unknown pool %q (default, network, web)" $w.name $p) }}
{{- end }}
{{- end }}
{{- range $c := $w.budgetClasses }}
{{- if not (has $c (list "standard" "slow")) }}
{{- fail (printf "scanfleet: worker %s: unknown budget class %q (standard, slow)" $w.name $c) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
