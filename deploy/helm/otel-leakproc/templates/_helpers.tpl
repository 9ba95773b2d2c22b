{{/* Chart name, truncated to the 63 characters of a DNS label. */}}
{{- define "otel-leakproc.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: <release>-<chart>, or the release name when it already contains the chart name. */}}
{{- define "otel-leakproc.fullname" -}}
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

{{- define "otel-leakproc.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "otel-leakproc.selectorLabels" -}}
app.kubernetes.io/name: {{ include "otel-leakproc.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "otel-leakproc.labels" -}}
helm.sh/chart: {{ include "otel-leakproc.chart" . }}
{{ include "otel-leakproc.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: leak-detector
{{- end }}

{{- define "otel-leakproc.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "otel-leakproc.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "otel-leakproc.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* The port number at the end of a HOST:PORT address. */}}
{{- define "otel-leakproc.port" -}}
{{- regexFind "[0-9]+$" . }}
{{- end }}

{{- define "otel-leakproc.tlsSecretName" -}}
{{- default (printf "%s-tls" (include "otel-leakproc.fullname" .)) .Values.tls.existingSecret }}
{{- end }}

{{- define "otel-leakproc.stateDir" -}}
{{- default "/var/lib/otel-leakproc" (dig "state" "dir" "" .Values.config) }}
{{- end }}

{{/*
The configuration file: .Values.config with the server TLS file paths filled in when tls.enabled.
Rendered once here so the ConfigMap and the checksum annotation agree.
*/}}
{{- define "otel-leakproc.config" -}}
{{- $config := deepCopy .Values.config }}
{{- if .Values.tls.enabled }}
{{- $tls := dict "cert_file" "/etc/otel-leakproc/tls/tls.crt" "key_file" "/etc/otel-leakproc/tls/tls.key" }}
{{- $grpcTls := deepCopy $tls }}
{{- if .Values.tls.clientAuth }}
{{- $_ := set $grpcTls "client_ca_file" "/etc/otel-leakproc/tls/ca.crt" }}
{{- end }}
{{- $_ := mergeOverwrite $config (dict "server" (dict "http" (dict "tls" $tls) "grpc" (dict "tls" $grpcTls))) }}
{{- end }}
{{- if .Values.redis.url }}
{{- $redis := dict "url" .Values.redis.url "cluster" .Values.redis.cluster }}
{{- if or .Values.redis.password .Values.redis.existingSecret }}
{{- $_ := set $redis "password_env" "LEAKPROC_REDIS_PASSWORD" }}
{{- end }}
{{- $_ := mergeOverwrite $config (dict "state" (dict "backend" "redis" "redis" $redis)) }}
{{- end }}
{{- toYaml $config }}
{{- end }}

{{/* Invalid combinations stop the install with a message, before anything is applied. */}}
{{- define "otel-leakproc.validate" -}}
{{- $server := default dict .Values.config.server }}
{{- $shutdown := dig "shutdown_timeout_seconds" 20 $server }}
{{- if le (int64 .Values.terminationGracePeriodSeconds) (int64 (ceil $shutdown)) }}
{{- fail (printf "terminationGracePeriodSeconds (%v) must exceed config.server.shutdown_timeout_seconds (%v), or Kubernetes kills the pod before the state snapshot is saved" .Values.terminationGracePeriodSeconds $shutdown) }}
{{- end }}
{{- $backend := dig "state" "backend" "file" .Values.config }}
{{- if and (eq $backend "redis") (not .Values.redis.url) }}
{{- fail "config.state.backend redis: set redis.url (the chart writes config.state.redis from it); see docs/scaling.md" }}
{{- end }}
{{- if and (or .Values.autoscaling.enabled (gt (int .Values.replicaCount) 1)) (not .Values.redis.url) }}
{{- fail "more than one replica (replicaCount > 1 or autoscaling.enabled) needs redis.url: the replicas share the series through Redis (docs/scaling.md)" }}
{{- end }}
{{- if and .Values.redis.url (not (regexMatch "^rediss?://" .Values.redis.url)) }}
{{- fail "redis.url must start with redis:// or rediss://" }}
{{- end }}
{{- if and .Values.redis.url (regexMatch "^rediss?://[^/@]*:[^/@]*@" .Values.redis.url) }}
{{- fail "redis.url: put no password in the URL (it would sit in a ConfigMap); use redis.password or redis.existingSecret" }}
{{- end }}
{{- if and .Values.persistence.enabled (or .Values.autoscaling.enabled (gt (int .Values.replicaCount) 1)) }}
{{- fail "persistence.enabled needs a single replica (replicaCount 1, autoscaling off): each pod writes its own state snapshot and a ReadWriteOnce claim attaches to one node; see docs/deploy.md" }}
{{- end }}
{{- if and .Values.tls.enabled (not .Values.tls.existingSecret) (or (not .Values.tls.cert) (not .Values.tls.key)) }}
{{- fail "tls.enabled needs tls.existingSecret, or tls.cert and tls.key" }}
{{- end }}
{{- if and .Values.tls.clientAuth (not .Values.tls.enabled) }}
{{- fail "tls.clientAuth needs tls.enabled" }}
{{- end }}
{{- if and .Values.tls.clientAuth (not .Values.tls.existingSecret) (not .Values.tls.clientCA) }}
{{- fail "tls.clientAuth needs tls.clientCA (or ca.crt in tls.existingSecret)" }}
{{- end }}
{{- if dig "http" "tls" "client_ca_file" "" $server }}
{{- fail "config.server.http.tls.client_ca_file: mTLS on the HTTP listener makes the kubelet's /livez and /readyz probes fail; use tls.clientAuth (gRPC only) and tokens on HTTP" }}
{{- end }}
{{- if and .Values.tls.enabled (or (dig "http" "tls" "cert_file" "" $server) (dig "grpc" "tls" "cert_file" "" $server)) }}
{{- fail "with tls.enabled the chart sets config.server.*.tls; remove them from config" }}
{{- end }}
{{- if and .Values.prometheusRule.enabled (not (.Files.Glob "files/config/alerts/*.yml")) }}
{{- fail "prometheusRule.enabled, but the chart has no alert rules (files/config/alerts/*.yml links to config/alerts)" }}
{{- end }}
{{- end }}
