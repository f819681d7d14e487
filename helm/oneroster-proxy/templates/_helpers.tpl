{{/*
Names and labels, the store URL, and a small TOML writer for the config file.
*/}}

{{- define "oneroster-proxy.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "oneroster-proxy.fullname" -}}
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

{{- define "oneroster-proxy.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "oneroster-proxy.selectorLabels" -}}
app.kubernetes.io/name: {{ include "oneroster-proxy.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "oneroster-proxy.labels" -}}
helm.sh/chart: {{ include "oneroster-proxy.chart" . }}
{{ include "oneroster-proxy.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "oneroster-proxy.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "oneroster-proxy.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The Secret whose keys become the proxy's environment ("" when there is none). */}}
{{- define "oneroster-proxy.secretName" -}}
{{- if .Values.existingSecret }}
{{- .Values.existingSecret }}
{{- else if .Values.secrets }}
{{- include "oneroster-proxy.fullname" . }}
{{- end }}
{{- end }}

{{- define "oneroster-proxy.redisName" -}}
{{- printf "%s-redis" (include "oneroster-proxy.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* "true" when the bundled Redis is deployed: enabled, and no external store given. */}}
{{- define "oneroster-proxy.bundledRedis" -}}
{{- if and .Values.redis.enabled (not .Values.store.url) (not (.Values.store.sentinel | default dict).hosts) }}true{{ end }}
{{- end }}

{{/* store.url if given, else the sentinels, else the bundled Redis, else a sqlite file (one
replica only). */}}
{{- define "oneroster-proxy.storeUrl" -}}
{{- $sentinel := .Values.store.sentinel | default dict }}
{{- if .Values.store.url }}
{{- .Values.store.url }}
{{- else if $sentinel.hosts }}
{{- $auth := "" }}
{{- with $sentinel.passwordFrom }}{{ $auth = printf ":${%s}@" . }}{{ end }}
{{- printf "redis+sentinel://%s%s/%s/%d" $auth (join "," $sentinel.hosts) ($sentinel.service | default "mymaster") (int ($sentinel.db | default 0)) }}
{{- else if .Values.redis.enabled }}
{{- printf "redis://%s:6379/0" (include "oneroster-proxy.redisName" .) }}
{{- else }}
{{- "sqlite:///var/lib/oneroster-proxy/store.db" }}
{{- end }}
{{- end }}

{{- define "oneroster-proxy.sqlite" -}}
{{- if hasPrefix "sqlite:" (include "oneroster-proxy.storeUrl" .) }}true{{ end }}
{{- end }}

{{/* One TOML value: strings as JSON strings (a subset of TOML basic strings), lists inline. */}}
{{- define "oneroster-proxy.tomlValue" -}}
{{- if kindIs "slice" . -}}
[{{ range $i, $v := . }}{{ if $i }}, {{ end }}{{ include "oneroster-proxy.tomlValue" $v }}{{ end }}]
{{- else if kindIs "string" . -}}
{{ toJson . }}
{{- else if kindIs "bool" . -}}
{{ ternary "true" "false" . }}
{{- else if kindIs "map" . -}}
{{/* an inline table inside a list: a district's windows and pauses */}}
{ {{- $first := true }}{{ range $k, $v := . }}{{ if not $first }},{{ end }}{{ $first = false }} {{ toJson $k }} = {{ include "oneroster-proxy.tomlValue" $v }}{{ end }} }
{{- else -}}
{{ toJson . }}
{{- end -}}
{{- end }}

{{/* The keys of one table; empty strings and nulls are left out (the proxy's default). */}}
{{- define "oneroster-proxy.tomlKeys" -}}
{{- range $key, $value := . }}
{{- if not (or (kindIs "invalid" $value) (and (kindIs "string" $value) (eq $value ""))) }}
{{ $key }} = {{ include "oneroster-proxy.tomlValue" $value }}
{{- end }}
{{- end }}
{{- end }}

{{/* The whole config.toml. */}}
{{- define "oneroster-proxy.config" -}}
# Rendered by the oneroster-proxy Helm chart from .Values.config; edit values, not this.
[server]
listen = {{ printf "0.0.0.0:%d" (int .Values.ports.gateway) | toJson }}
{{- include "oneroster-proxy.tomlKeys" (omit (.Values.config.server | default dict) "listen") }}

[admin]
listen = {{ printf "0.0.0.0:%d" (int .Values.ports.admin) | toJson }}
{{- with .Values.config.admin.tokenFrom }}
token = {{ printf "${%s}" . | toJson }}
{{- end }}

[store]
url = {{ include "oneroster-proxy.storeUrl" . | toJson }}
{{- include "oneroster-proxy.tomlKeys" (omit (.Values.config.store | default dict) "url") }}
{{- range $section := list "vendors" "districts" "connections" }}
{{- range $name, $table := (get $.Values.config $section | default dict) }}

[{{ $section }}.{{ toJson $name }}]
{{- include "oneroster-proxy.tomlKeys" ($table | default dict) }}
{{- end }}
{{- end }}
{{ end }}
