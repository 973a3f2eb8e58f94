{{/* Chart name, truncated to 63 characters. */}}
{{- define "temporal-migrator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: release + chart name unless the release name already contains it; 63 characters at most. */}}
{{- define "temporal-migrator.fullname" -}}
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

{{- define "temporal-migrator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "temporal-migrator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "temporal-migrator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "temporal-migrator.labels" -}}
helm.sh/chart: {{ include "temporal-migrator.chart" . }}
{{ include "temporal-migrator.selectorLabels" . }}
app.kubernetes.io/version: {{ include "temporal-migrator.imageTag" . | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: schema-migration
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "temporal-migrator.imageTag" -}}
{{- .Values.image.tag | default .Chart.AppVersion | toString }}
{{- end }}

{{/* repository:tag, or repository@digest when a digest is given. */}}
{{- define "temporal-migrator.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (include "temporal-migrator.imageTag" .) }}
{{- end }}
{{- end }}

{{/*
Run key: a digest of everything that should make ArgoCD re-run the hook: chart version, image, both target
versions and the optional rerun token. No timestamps, so an unchanged configuration renders identically.
*/}}
{{- define "temporal-migrator.runKey" -}}
{{- $parts := list
      (printf "chart=%s" .Chart.Version)
      (printf "image=%s" (include "temporal-migrator.image" .))
      (printf "default=%s" (.Values.stores.default.targetVersion | toString))
      (printf "visibility=%s" (.Values.stores.visibility.targetVersion | toString))
      (printf "rerun=%s" (.Values.hook.rerunToken | toString)) }}
{{- join "\n" $parts | sha256sum }}
{{- end }}

{{- define "temporal-migrator.jobName" -}}
{{- $full := include "temporal-migrator.fullname" . }}
{{- if .Values.hook.enabled }}
{{- $full }}
{{- else }}
{{- printf "%s-%s" ($full | trunc 54 | trimSuffix "-") (include "temporal-migrator.runKey" . | trunc 8) }}
{{- end }}
{{- end }}

{{/* A TLS file value: absolute paths as given, names inside database.tls.existingSecret under its mount. */}}
{{- define "temporal-migrator.tlsPath" -}}
{{- $tls := .root.Values.database.tls }}
{{- if hasPrefix "/" .file }}
{{- .file }}
{{- else if $tls.existingSecret }}
{{- printf "%s/%s" (trimSuffix "/" $tls.mountPath) .file }}
{{- else }}
{{- fail (printf "database.tls.%s must be an absolute path, or a file name inside database.tls.existingSecret" .key) }}
{{- end }}
{{- end }}

{{/*
Environment of one store's container. Call with (dict "root" $ "schema" "temporal"|"visibility" "command" "migrate"|"wait").
The password only ever comes from the store's Secret.
*/}}
{{- define "temporal-migrator.storeEnv" -}}
{{- $root := .root }}
{{- $v := $root.Values }}
{{- $store := ternary $v.stores.default $v.stores.visibility (eq .schema "temporal") -}}
- name: SQL_HOST
  value: {{ $store.host | default $v.database.host | quote }}
- name: SQL_PORT
  value: {{ $v.database.port | toString | quote }}
- name: SQL_PLUGIN
  value: {{ $v.database.plugin | quote }}
- name: SQL_DATABASE
  value: {{ $store.database | quote }}
{{- if $store.usernameKey }}
- name: SQL_USER
  valueFrom:
    secretKeyRef:
      name: {{ $store.existingSecret | quote }}
      key: {{ $store.usernameKey | quote }}
{{- else }}
- name: SQL_USER
  value: {{ $store.user | quote }}
{{- end }}
- name: SQL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $store.existingSecret | quote }}
      key: {{ $store.passwordKey | quote }}
- name: SQL_TLS
  value: {{ $v.database.tls.enabled | toString | quote }}
{{- if $v.database.tls.enabled }}
{{- range $key, $name := dict "caFile" "SQL_TLS_CA_FILE" "certFile" "SQL_TLS_CERT_FILE" "keyFile" "SQL_TLS_KEY_FILE" }}
{{- $file := index $v.database.tls $key }}
{{- if $file }}
- name: {{ $name }}
  value: {{ include "temporal-migrator.tlsPath" (dict "root" $root "file" $file "key" $key) | quote }}
{{- end }}
{{- end }}
{{- with $v.database.tls.serverName }}
- name: SQL_TLS_SERVER_NAME
  value: {{ . | quote }}
{{- end }}
- name: SQL_TLS_DISABLE_HOST_VERIFICATION
  value: {{ $v.database.tls.disableHostVerification | toString | quote }}
{{- end }}
- name: MIGRATOR_SCHEMA
  value: {{ .schema | quote }}
- name: MIGRATOR_SCHEMA_DIR
  value: {{ $v.schemaDir | quote }}
{{- with $store.targetVersion }}
- name: MIGRATOR_TARGET_VERSION
  value: {{ . | toString | quote }}
{{- end }}
- name: MIGRATOR_CONNECT_TIMEOUT
  value: {{ $v.connectTimeout | int64 | toString | quote }}
{{- if eq .command "wait" }}
- name: MIGRATOR_WAIT_TIMEOUT
  value: {{ $v.wait.timeout | int64 | toString | quote }}
{{- else }}
- name: MIGRATOR_LOCK_TIMEOUT
  value: {{ $v.lockTimeout | int64 | toString | quote }}
- name: MIGRATOR_TOOL_TIMEOUT
  value: {{ $v.toolTimeout | int64 | toString | quote }}
- name: MIGRATOR_DDL_LOCK_TIMEOUT
  value: {{ $v.ddlLockTimeout | int64 | toString | quote }}
- name: MIGRATOR_DDL_RETRY_TIMEOUT
  value: {{ $v.ddlRetryTimeout | int64 | toString | quote }}
{{- with $v.maxRewriteSize }}
- name: MIGRATOR_MAX_REWRITE_SIZE
  value: {{ . | quote }}
{{- end }}
- name: MIGRATOR_REWRITE_MODE
  value: {{ $v.rewriteMode | quote }}
- name: MIGRATOR_MAX_STALL
  value: {{ $v.maxStall | toString | quote }}
- name: MIGRATOR_ONLINE_ALLOW_ALL_TABLES_PUBLICATION
  value: {{ $v.onlineAllowAllTablesPublication | toString | quote }}
{{- if $v.abortOnline }}
- name: MIGRATOR_ABORT_ONLINE
  value: "true"
{{- end }}
{{- if $store.createDatabase }}
- name: MIGRATOR_CREATE_DATABASE
  value: "true"
{{- end }}
{{- end }}
- name: MIGRATOR_LOG_FORMAT
  value: json
- name: MIGRATOR_LOG_LEVEL
  value: {{ $v.logLevel | quote }}
{{- with $v.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "temporal-migrator.volumeMounts" -}}
- name: temporal-migrator-tmp
  mountPath: /tmp
{{- if and .Values.database.tls.enabled .Values.database.tls.existingSecret }}
- name: tls
  mountPath: {{ .Values.database.tls.mountPath | quote }}
  readOnly: true
{{- end }}
{{- with .Values.extraVolumeMounts }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
One container. Call with (dict "root" $ "schema" "temporal"|"visibility" "command" "migrate"|"wait").
*/}}
{{- define "temporal-migrator.container" -}}
{{- $root := .root }}
{{- $short := ternary "default" "visibility" (eq .schema "temporal") -}}
- name: {{ printf "%s-%s" .command $short }}
  image: {{ include "temporal-migrator.image" $root | quote }}
  imagePullPolicy: {{ $root.Values.image.pullPolicy }}
  args:
    - {{ .command }}
    - --schema
    - {{ .schema }}
  env:
    {{- include "temporal-migrator.storeEnv" . | nindent 4 }}
  {{- with $root.Values.securityContext }}
  securityContext:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $root.Values.resources }}
  resources:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  terminationMessagePolicy: FallbackToLogsOnError
  volumeMounts:
    {{- include "temporal-migrator.volumeMounts" $root | nindent 4 }}
{{- end }}

{{/*
The `wait` snippet: init containers that hold a pod until both stores are at their target versions. Needs the
pod to have an emptyDir volume named `temporal-migrator-tmp` (listed in temporal-migrator.waitVolumes).
*/}}
{{- define "temporal-migrator.waitInitContainers" -}}
{{- include "temporal-migrator.container" (dict "root" . "schema" "temporal" "command" "wait") }}
{{ include "temporal-migrator.container" (dict "root" . "schema" "visibility" "command" "wait") }}
{{- end }}

{{- define "temporal-migrator.volumes" -}}
- name: temporal-migrator-tmp
  emptyDir:
    sizeLimit: 64Mi
{{- if and .Values.database.tls.enabled .Values.database.tls.existingSecret }}
- name: tls
  secret:
    secretName: {{ .Values.database.tls.existingSecret | quote }}
    defaultMode: 0440
{{- end }}
{{- with .Values.extraVolumes }}
{{ toYaml . }}
{{- end }}
{{- end }}
