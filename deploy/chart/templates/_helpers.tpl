{{/*
Names and labels follow Cray-HPE's cray-service base chart: the full name is
the release name when it contains the chart name, name and instance select
the pods, managed-by and helm.sh/chart mark every object.
*/}}
{{- define "etcd-repopulate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "etcd-repopulate.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 56 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 56 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 56 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The worker's objects: Deployment, ServiceAccount, Roles, ConfigMap. */}}
{{- define "etcd-repopulate.worker" -}}
{{- include "etcd-repopulate.fullname" . }}-worker
{{- end -}}

{{- define "etcd-repopulate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "etcd-repopulate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: worker
{{- end -}}

{{- define "etcd-repopulate.labels" -}}
{{ include "etcd-repopulate.selectorLabels" . }}
app.kubernetes.io/part-of: etcd-repopulate
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end -}}
