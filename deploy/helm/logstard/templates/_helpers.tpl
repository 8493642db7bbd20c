{{/* Names and labels shared by the templates. */}}
{{- define "logstard.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "logstard.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "logstard.selectorLabels" -}}
app.kubernetes.io/name: {{ include "logstard.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "logstard.labels" -}}
{{ include "logstard.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: daemon
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "logstard.claimName" -}}
{{- .Values.persistence.existingClaim | default (printf "%s-state" (include "logstard.fullname" .)) -}}
{{- end -}}

{{/* The session store's URL with scaleOut: the given one, or the chart's Redis. */}}
{{- define "logstard.sessionStore" -}}
{{- .Values.scaleOut.sessionStore | default (printf "redis://%s-redis:%v/0" (include "logstard.fullname" .) .Values.scaleOut.redis.port) -}}
{{- end -}}
