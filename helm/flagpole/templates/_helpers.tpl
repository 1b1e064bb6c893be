{{/* Chart name, truncated to the 63 characters a label value allows. */}}
{{- define "flagpole.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified app name: release-chart unless the release name already contains it. */}}
{{- define "flagpole.fullname" -}}
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

{{- define "flagpole.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "flagpole.selectorLabels" -}}
app.kubernetes.io/name: {{ include "flagpole.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "flagpole.labels" -}}
helm.sh/chart: {{ include "flagpole.chart" . }}
{{ include "flagpole.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "flagpole.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "flagpole.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The ConfigMap holding the flag document. */}}
{{- define "flagpole.configMapName" -}}
{{- default (printf "%s-flags" (include "flagpole.fullname" .)) .Values.flags.configMap.existingName }}
{{- end }}

{{/* More than one pod can run: a PodDisruptionBudget makes sense. */}}
{{- define "flagpole.multiReplica" -}}
{{- if or .Values.autoscaling.enabled (gt (int .Values.replicaCount) 1) }}true{{ end }}
{{- end }}

{{/* Arguments of `flagpole start`. */}}
{{- define "flagpole.args" -}}
- start
- --port={{ .Values.ports.evaluation }}
- --management-port={{ .Values.ports.management }}
- --sync-port={{ .Values.ports.sync }}
- --ofrep-port={{ .Values.ports.ofrep }}
- --drain-delay={{ .Values.drainDelay }}
{{- if .Values.cache.enabled }}
- --cache-dir=/var/cache/flagpole
{{- end }}
{{- if eq .Values.flags.source "s3" }}
{{- if not .Values.s3.uri }}
{{- fail "flags.source is s3: set s3.uri (s3://bucket/key)" }}
{{- end }}
{{- if and .Values.sns.topicArn .Values.sqs.queueUrl }}
{{- fail "set sns.topicArn (a queue per pod) or sqs.queueUrl (one shared queue), not both" }}
{{- end }}
- --uri={{ .Values.s3.uri }}
{{- with .Values.sns.topicArn }}
- --sns-topic-arn={{ . }}
{{- with $.Values.sns.queueNamePrefix }}
- --sqs-queue-prefix={{ . }}
{{- end }}
{{- end }}
{{- with .Values.sqs.queueUrl }}
- --sqs-queue-url={{ . }}
{{- end }}
{{- else }}
- --uri=file:/etc/flagpole/{{ .Values.flags.configMap.key }}
{{- end }}
{{- if .Values.auth.existingSecret }}
- --auth-token-file=/etc/flagpole-auth/{{ .Values.auth.key }}
{{- end }}
{{- range .Values.extraArgs }}
- {{ . | quote }}
{{- end }}
{{- end }}
