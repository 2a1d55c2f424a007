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
