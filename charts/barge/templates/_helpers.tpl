{{/* The chart name, or nameOverride. */}}
{{- define "barge.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The prefix of every object name: fullnameOverride, else the release name when
it contains the chart name, else "<release>-<chart>". At most 63 characters.
*/}}
{{- define "barge.fullname" -}}
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

{{/* "<chart>-<version>" for the helm.sh/chart label. */}}
{{- define "barge.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "barge.labels" -}}
helm.sh/chart: {{ include "barge.chart" . }}
{{ include "barge.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: barge
{{- end }}

{{/* Labels that select the controller Pods. */}}
{{- define "barge.selectorLabels" -}}
app.kubernetes.io/name: {{ include "barge.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: controller
{{- end }}

{{/* The controller's ServiceAccount name. */}}
{{- define "barge.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "barge.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The image reference: repository, then @digest or :tag (appVersion by default). */}}
{{- define "barge.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* "true" when the controller elects a leader: asked for, or more than one replica. */}}
{{- define "barge.leaderElection" -}}
{{- if or .Values.controller.leaderElection.enabled (gt (int .Values.replicas) 1) }}true{{ else }}false{{ end }}
{{- end }}

{{/* The Application rules: in the ClusterRole, or in a Role in the Argo CD namespace. */}}
{{- define "barge.applicationRules" -}}
# The Application cache and watch: wake-ups, name and label-selector lookups,
# Stage health.
- apiGroups: ["argoproj.io"]
  resources: ["applications"]
  verbs: ["list", "watch"]
# argocd-update re-reads the live Application before requesting a sync, so a
# sync is never requested twice.
- apiGroups: ["argoproj.io"]
  resources: ["applications"]
  verbs: ["get"]
# argocd-update writes the sync operation and new revisions; the Stage
# controller asks Argo CD for a refresh (annotation).
- apiGroups: ["argoproj.io"]
  resources: ["applications"]
  verbs: ["patch"]
{{- end }}

{{/*
The webhook endpoint's public URL: webhooks.baseURL, else derived from the
Ingress when it is enabled with a host (https with tls, else http; the path
without its trailing slash), else empty.
*/}}
{{- define "barge.webhookBaseURL" -}}
{{- $w := .Values.webhooks }}
{{- if $w.baseURL }}
{{- $w.baseURL }}
{{- else if and $w.ingress.enabled $w.ingress.host }}
{{- printf "%s://%s%s" (ternary "https" "http" (not (empty $w.ingress.tls))) $w.ingress.host (trimSuffix "/" $w.ingress.path) }}
{{- end }}
{{- end }}
