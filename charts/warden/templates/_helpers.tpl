{{/*
Names and labels, as in `helm create`.
*/}}
{{- define "warden.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "warden.fullname" -}}
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

{{- define "warden.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "warden.labels" -}}
helm.sh/chart: {{ include "warden.chart" . }}
{{ include "warden.selectorLabels" . }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "warden.selectorLabels" -}}
app.kubernetes.io/name: {{ include "warden.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "warden.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "warden.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
An image reference from {repository, tag, digest}; the tag defaults to $default.
Usage: include "warden.imageRef" (list .Values.warden.image .Chart.AppVersion)
*/}}
{{- define "warden.imageRef" -}}
{{- $img := index . 0 }}
{{- if $img.digest }}
{{- printf "%s@%s" $img.repository $img.digest }}
{{- else }}
{{- printf "%s:%s" $img.repository (toString (default (index . 1) $img.tag)) }}
{{- end }}
{{- end }}

{{/*
Whether warden checks credentials: "true" or "".
*/}}
{{- define "warden.protected" -}}
{{- if eq .Values.warden.mode "protected" }}true{{ end }}
{{- end }}

{{/*
Whether this chart makes the Secret (protected mode without an existing Secret).
*/}}
{{- define "warden.chartMadeSecret" -}}
{{- if and (include "warden.protected" .) (not .Values.secret.existingSecret) (not .Values.secret.sha256) }}true{{ end }}
{{- end }}

{{/*
Whether warden reads its secret from a mounted Secret: protected mode, unless
the secret is given as its digest (secret.sha256).
*/}}
{{- define "warden.secretMounted" -}}
{{- if and (include "warden.protected" .) (not .Values.secret.sha256) }}true{{ end }}
{{- end }}

{{- define "warden.secretName" -}}
{{- default (include "warden.fullname" .) .Values.secret.existingSecret }}
{{- end }}

{{/*
The chart-made Secret's password, the same in every template of one render:
secret.password if set; else the value the Secret already holds in the cluster
(lookup), so upgrades keep it; else 32 random characters, chosen once per render
and remembered in .Values so the Secret and the checksum annotation agree.
*/}}
{{- define "warden.secretPassword" -}}
{{- if not (hasKey .Values.secret "_renderedPassword") }}
{{- $pw := .Values.secret.password }}
{{- if not $pw }}
{{- $existing := lookup "v1" "Secret" .Release.Namespace (include "warden.fullname" .) | default dict }}
{{- $old := dig "data" .Values.secret.key "" $existing }}
{{- /* 32 random bytes as unpadded base64url, as `warden secret` makes */}}
{{- $new := randBytes 32 | replace "+" "-" | replace "/" "_" | trimSuffix "=" }}
{{- $pw = ternary (b64dec $old) $new (ne $old "") }}
{{- end }}
{{- $_ := set .Values.secret "_renderedPassword" $pw }}
{{- end }}
{{- .Values.secret._renderedPassword }}
{{- end }}

{{/*
Pod annotations warden needs: a checksum of the chart-made Secret, so pods
restart when it changes (warden reads the secret only at start). None for an
existing Secret: roll the pods yourself when you change it.
*/}}
{{- define "warden.podAnnotations" -}}
{{- if include "warden.chartMadeSecret" . -}}
checksum/warden-secret: {{ printf "warden-secret\n%s\n%s" .Values.secret.key (include "warden.secretPassword" .) | sha256sum }}
{{- end }}
{{- end }}

{{/*
Seconds the pod needs to stop: more than warden's drain delay plus shutdown
timeout, so warden finishes in-flight requests before the kubelet kills it.
*/}}
{{- define "warden.terminationGracePeriodSeconds" -}}
{{- $min := add .Values.warden.drainDelaySeconds .Values.warden.shutdownTimeoutSeconds }}
{{- if kindIs "invalid" .Values.terminationGracePeriodSeconds }}
{{- add $min 10 }}
{{- else }}
{{- int .Values.terminationGracePeriodSeconds }}
{{- end }}
{{- end }}

{{- define "warden.upstream" -}}
{{- default (printf "http://127.0.0.1:%d" (int .Values.model.port)) .Values.warden.upstream }}
{{- end }}

{{/*
Checks across values that the schema cannot express; fails the render with a
message naming the values.
*/}}
{{- define "warden.validate" -}}
{{- $w := .Values.warden }}
{{- $s := .Values.secret }}
{{- $drainShutdown := add $w.drainDelaySeconds $w.shutdownTimeoutSeconds }}
{{- if and (not (kindIs "invalid" .Values.terminationGracePeriodSeconds)) (le (int .Values.terminationGracePeriodSeconds) (int $drainShutdown)) }}
{{- fail (printf "terminationGracePeriodSeconds (%v) must be greater than warden.drainDelaySeconds + warden.shutdownTimeoutSeconds (%d), or warden is killed while it drains" .Values.terminationGracePeriodSeconds (int $drainShutdown)) }}
{{- end }}
{{- if and (eq $w.mode "public") (or $s.existingSecret $s.password $s.previous.existingSecret) }}
{{- fail "warden.mode=public takes no secret: unset secret.existingSecret, secret.password and secret.previous.existingSecret, or use warden.mode=protected" }}
{{- end }}
{{- if and $s.existingSecret $s.password }}
{{- fail "set secret.existingSecret or secret.password, not both" }}
{{- end }}
{{- if and $s.sha256 (or $s.existingSecret $s.password) }}
{{- fail "set one of secret.sha256, secret.existingSecret and secret.password" }}
{{- end }}
{{- if and (eq $w.mode "public") (or $s.sha256 $s.previous.sha256) }}
{{- fail "warden.mode=public takes no secret: unset secret.sha256 and secret.previous.sha256, or use warden.mode=protected" }}
{{- end }}
{{- if and $s.previous.sha256 $s.previous.existingSecret }}
{{- fail "set secret.previous.sha256 or secret.previous.existingSecret, not both" }}
{{- end }}
{{- if and (or $s.previous.existingSecret $s.previous.sha256) (not $s.previous.until) }}
{{- fail "secret.previous.until is required with secret.previous.existingSecret or secret.previous.sha256: an RFC 3339 time after which the previous secret stops working" }}
{{- end }}
{{- if and $s.previous.until (not (or $s.previous.existingSecret $s.previous.sha256)) }}
{{- fail "secret.previous.until is set but neither secret.previous.existingSecret nor secret.previous.sha256 is" }}
{{- end }}
{{- if eq (int $w.port) (int $w.adminPort) }}
{{- fail "warden.port and warden.adminPort must differ" }}
{{- end }}
{{- if and (not $w.upstream) (or (eq (int .Values.model.port) (int $w.port)) (eq (int .Values.model.port) (int $w.adminPort))) }}
{{- fail "model.port must differ from warden.port and warden.adminPort: they share the pod's network" }}
{{- end }}
{{- $managed := list "WARDEN_LISTEN" "WARDEN_ADMIN_LISTEN" "WARDEN_UPSTREAM" "WARDEN_MODE" "WARDEN_USERNAME" "WARDEN_PASSWORD" "WARDEN_PASSWORD_FILE" "WARDEN_PREVIOUS_PASSWORD" "WARDEN_PREVIOUS_PASSWORD_FILE" "WARDEN_PREVIOUS_PASSWORD_UNTIL" "WARDEN_UPSTREAM_TIMEOUT" "WARDEN_LOG_LEVEL" "WARDEN_LOG_FORMAT" "WARDEN_ACCESS_LOG" "WARDEN_TRUSTED_PROXIES" "WARDEN_AUTH_SCHEMES" "WARDEN_AUTH_FAILURE_LIMIT" "WARDEN_AUTH_FAILURE_WINDOW" "WARDEN_SSE_HEARTBEAT" "WARDEN_DENY_PATHS" "WARDEN_MAX_BODY_BYTES" "WARDEN_MAX_CONNS" "WARDEN_DRAIN_DELAY" "WARDEN_SHUTDOWN_TIMEOUT" "WARDEN_TLS_CERT_FILE" "WARDEN_TLS_KEY_FILE" }}
{{- range $name, $_ := $w.env }}
{{- if has $name $managed }}
{{- fail (printf "warden.env.%s: the chart sets %s from its own values (see values.yaml); secrets come from secret.*" $name $name) }}
{{- end }}
{{- end }}
{{- end }}

{{/*
warden's container, as one item of a pod's `containers` list.

The context is warden's chart scope: `.` in this chart, and
`.Subcharts.warden` in a parent chart that depends on this one (see README.md,
"Injecting warden into your own pod"). Pair it with "warden.volumes" in the
pod's volumes and "warden.podAnnotations" in its annotations, and give the pod
terminationGracePeriodSeconds of at least "warden.terminationGracePeriodSeconds".
*/}}
{{- define "warden.container" -}}
{{- include "warden.validate" . }}
{{- $w := .Values.warden -}}
- name: warden
  image: {{ include "warden.imageRef" (list $w.image .Chart.AppVersion) | quote }}
  imagePullPolicy: {{ $w.image.pullPolicy }}
  ports:
    - name: http
      containerPort: {{ $w.port }}
      protocol: TCP
    - name: admin
      containerPort: {{ $w.adminPort }}
      protocol: TCP
  env:
    - name: WARDEN_LISTEN
      value: {{ printf ":%d" (int $w.port) | quote }}
    - name: WARDEN_ADMIN_LISTEN
      value: {{ printf ":%d" (int $w.adminPort) | quote }}
    - name: WARDEN_UPSTREAM
      value: {{ include "warden.upstream" . | quote }}
    - name: WARDEN_MODE
      value: {{ $w.mode | quote }}
    {{- if include "warden.protected" . }}
    - name: WARDEN_USERNAME
      value: {{ $w.username | quote }}
    {{- if .Values.secret.sha256 }}
    - name: WARDEN_PASSWORD_SHA256
      value: {{ .Values.secret.sha256 | quote }}
    {{- else }}
    - name: WARDEN_PASSWORD_FILE
      value: /etc/warden/secret/password
    {{- end }}
    {{- if .Values.secret.previous.existingSecret }}
    - name: WARDEN_PREVIOUS_PASSWORD_FILE
      value: /etc/warden/previous-secret/password
    {{- else if .Values.secret.previous.sha256 }}
    - name: WARDEN_PREVIOUS_PASSWORD_SHA256
      value: {{ .Values.secret.previous.sha256 | quote }}
    {{- end }}
    {{- if or .Values.secret.previous.existingSecret .Values.secret.previous.sha256 }}
    - name: WARDEN_PREVIOUS_PASSWORD_UNTIL
      value: {{ .Values.secret.previous.until | quote }}
    {{- end }}
    - name: WARDEN_AUTH_SCHEMES
      value: {{ join "," $w.authSchemes | quote }}
    - name: WARDEN_AUTH_FAILURE_LIMIT
      value: {{ $w.authFailureLimit | int | toString | quote }}
    - name: WARDEN_AUTH_FAILURE_WINDOW
      value: {{ $w.authFailureWindow | quote }}
    {{- if not (kindIs "invalid" $w.trustedProxies) }}
    - name: WARDEN_TRUSTED_PROXIES
      value: {{ join "," $w.trustedProxies | quote }}
    {{- end }}
    {{- end }}
    - name: WARDEN_UPSTREAM_TIMEOUT
      value: {{ $w.upstreamTimeout | quote }}
    - name: WARDEN_MAX_BODY_BYTES
      value: {{ $w.maxBodyBytes | int64 | toString | quote }}
    - name: WARDEN_MAX_CONNS
      value: {{ $w.maxConns | int | toString | quote }}
    - name: WARDEN_SSE_HEARTBEAT
      value: {{ $w.sseHeartbeat | quote }}
    {{- with $w.denyPaths }}
    - name: WARDEN_DENY_PATHS
      value: {{ join "," . | quote }}
    {{- end }}
    - name: WARDEN_DRAIN_DELAY
      value: {{ printf "%ds" (int $w.drainDelaySeconds) | quote }}
    - name: WARDEN_SHUTDOWN_TIMEOUT
      value: {{ printf "%ds" (int $w.shutdownTimeoutSeconds) | quote }}
    - name: WARDEN_LOG_LEVEL
      value: {{ $w.logLevel | quote }}
    - name: WARDEN_LOG_FORMAT
      value: {{ $w.logFormat | quote }}
    - name: WARDEN_ACCESS_LOG
      value: {{ $w.accessLog | toString | quote }}
    {{- if $w.tls.existingSecret }}
    - name: WARDEN_TLS_CERT_FILE
      value: /etc/warden/tls/tls.crt
    - name: WARDEN_TLS_KEY_FILE
      value: /etc/warden/tls/tls.key
    {{- end }}
    {{- range $name, $value := $w.env }}
    - name: {{ $name }}
      value: {{ toString $value | quote }}
    {{- end }}
  livenessProbe:
    httpGet:
      path: /healthz
      port: admin
    {{- toYaml $w.livenessProbe | nindent 4 }}
  readinessProbe:
    httpGet:
      path: /readyz
      port: admin
    {{- toYaml $w.readinessProbe | nindent 4 }}
  {{- with $w.resources }}
  resources:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $w.securityContext }}
  securityContext:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- if or (include "warden.secretMounted" .) .Values.secret.previous.existingSecret $w.tls.existingSecret }}
  volumeMounts:
    {{- if include "warden.protected" . }}
    {{- if include "warden.secretMounted" . }}
    - name: warden-secret
      mountPath: /etc/warden/secret
      readOnly: true
    {{- end }}
    {{- if .Values.secret.previous.existingSecret }}
    - name: warden-previous-secret
      mountPath: /etc/warden/previous-secret
      readOnly: true
    {{- end }}
    {{- end }}
    {{- if $w.tls.existingSecret }}
    - name: warden-tls
      mountPath: /etc/warden/tls
      readOnly: true
    {{- end }}
  {{- end }}
{{- end }}

{{/*
The volumes warden's container mounts, as items of a pod's `volumes` list
(nothing in public mode without TLS). Same context as "warden.container".
*/}}
{{- define "warden.volumes" -}}
{{- include "warden.volumeItems" . | trim }}
{{- end }}

{{- define "warden.volumeItems" -}}
{{- if include "warden.protected" . }}
{{- if include "warden.secretMounted" . }}
- name: warden-secret
  secret:
    secretName: {{ include "warden.secretName" . }}
    defaultMode: 0440
    items:
      - key: {{ .Values.secret.key }}
        path: password
{{- end }}
{{- if .Values.secret.previous.existingSecret }}
- name: warden-previous-secret
  secret:
    secretName: {{ .Values.secret.previous.existingSecret }}
    defaultMode: 0440
    items:
      - key: {{ .Values.secret.previous.key }}
        path: password
{{- end }}
{{- end }}
{{- if .Values.warden.tls.existingSecret }}
- name: warden-tls
  secret:
    secretName: {{ .Values.warden.tls.existingSecret }}
    defaultMode: 0440
    items:
      - key: tls.crt
        path: tls.crt
      - key: tls.key
        path: tls.key
{{- end }}
{{- end }}
