{{/* The chart's name, and the full name of its objects: the release name
when it contains the chart's name, else "<release>-direktiv-authz". */}}
{{- define "direktiv-authz.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "direktiv-authz.fullname" -}}
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

{{- define "direktiv-authz.selectorLabels" -}}
app.kubernetes.io/name: {{ include "direktiv-authz.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "direktiv-authz.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "direktiv-authz.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* The port of a listen address such as ":8090" or "0.0.0.0:8090". */}}
{{- define "direktiv-authz.port" -}}
{{- $port := regexFind "[0-9]+$" .addr -}}
{{- if not $port -}}
{{- fail (printf "settings.%s %q: want an address with a port, such as :%d" .name .addr .example) -}}
{{- end -}}
{{- $port -}}
{{- end }}

{{- define "direktiv-authz.httpPort" -}}
{{- include "direktiv-authz.port" (dict "name" "listen" "addr" (index .Values.settings "listen") "example" 8090) -}}
{{- end }}

{{- define "direktiv-authz.opsPort" -}}
{{- include "direktiv-authz.port" (dict "name" "ops-listen" "addr" (index .Values.settings "ops-listen") "example" 9090) -}}
{{- end }}

{{- define "direktiv-authz.upstream" -}}
{{- .Values.upstream.url | default (printf "http://%s-flow:6665" .Values.direktiv.fullname) -}}
{{- end }}

{{- define "direktiv-authz.apiKeySecret" -}}
{{- .Values.upstream.apiKey.existingSecret | default .Values.direktiv.fullname -}}
{{- end }}

{{- define "direktiv-authz.policiesConfigMap" -}}
{{- .Values.policies.existingConfigMap | default (printf "%s-policies" (include "direktiv-authz.fullname" .)) -}}
{{- end }}

{{/* Render-time checks of values the schema cannot express; each failure
names the value. With a cluster at hand (helm install, not helm template) a
Secret key that does not exist fails here too, not at pod start. */}}
{{- define "direktiv-authz.validate" -}}
{{- $_ := required "adminToken.existingSecret is required: the Secret holding the admin token (kubectl create secret generic direktiv-authz --from-file=admin-token)" .Values.adminToken.existingSecret -}}
{{- $r := .Values.redis -}}
{{- if and (not $r.url) (not $r.existingSecret) -}}
{{- fail "redis.url or redis.existingSecret is required: the Redis URL of the token store (deploy/README.md, Redis)" -}}
{{- end -}}
{{- if and $r.url $r.existingSecret -}}
{{- fail "redis.url and redis.existingSecret are both set: give one" -}}
{{- end -}}
{{- if and $r.password.existingSecret (not (contains "$(REDIS_PASSWORD)" $r.url)) -}}
{{- fail "redis.password.existingSecret is set but redis.url has no $(REDIS_PASSWORD): write it where the password goes, e.g. redis://:$(REDIS_PASSWORD)@redis-master:6379/0" -}}
{{- end -}}
{{- if and (contains "$(REDIS_PASSWORD)" $r.url) (not $r.password.existingSecret) -}}
{{- fail "redis.url has $(REDIS_PASSWORD) but redis.password.existingSecret is not set" -}}
{{- end -}}
{{- if and (eq .Values.policies.source "embedded") (or .Values.policies.files .Values.policies.existingConfigMap) -}}
{{- fail "policies.files or policies.existingConfigMap is set but policies.source is embedded: set policies.source to configMap" -}}
{{- end -}}
{{- if and (eq .Values.policies.source "configMap") .Values.policies.replaceDefaults (not .Values.policies.files) (not .Values.policies.existingConfigMap) -}}
{{- fail "policies.replaceDefaults is set but policies.files is empty: the ConfigMap would hold no rules" -}}
{{- end -}}
{{- if and .Values.ingress.enabled .Values.ingress.certificate (not .Values.ingress.host) -}}
{{- fail "ingress.certificate is set but ingress.host is empty: the TLS certificate is for a host" -}}
{{- end -}}
{{- $grace := index .Values.settings "shutdown-grace" | toString -}}
{{- if regexMatch "^[0-9]+s$" $grace -}}
{{- if ge (add (int .Values.preStopSleepSeconds) (int (trimSuffix "s" $grace))) (int .Values.terminationGracePeriodSeconds) -}}
{{- fail (printf "terminationGracePeriodSeconds %d must exceed preStopSleepSeconds %d plus settings.shutdown-grace %s, or the kubelet kills requests in flight" (int .Values.terminationGracePeriodSeconds) (int .Values.preStopSleepSeconds) $grace) -}}
{{- end -}}
{{- end -}}
{{- range $k, $v := .Values.settings -}}
{{- if has $k (list "upstream" "redis-url" "admin-token-file" "upstream-api-key-file" "policies" "tls-cert-file" "tls-key-file" "dev" "strict") -}}
{{- fail (printf "settings.%s: set it through its own value (upstream, redis, adminToken, upstream.apiKey, policies, tls), not settings" $k) -}}
{{- end -}}
{{- end -}}
{{- range .Values.extraEnv -}}
{{- if hasPrefix "DIREKTIV_AUTHZ_" .name -}}
{{- fail (printf "extraEnv %s: the sidecar's settings are values under settings, not variables" .name) -}}
{{- end -}}
{{- end -}}
{{- $checks := list (list "adminToken" .Values.adminToken.existingSecret .Values.adminToken.key "") -}}
{{- if .Values.upstream.apiKey.enabled -}}
{{- $checks = append $checks (list "upstream.apiKey" (include "direktiv-authz.apiKeySecret" .) .Values.upstream.apiKey.key "; with Direktiv's apikey \"none\" set upstream.apiKey.enabled=false") -}}
{{- end -}}
{{- if $r.existingSecret -}}
{{- $checks = append $checks (list "redis" $r.existingSecret $r.key "") -}}
{{- end -}}
{{- if $r.password.existingSecret -}}
{{- $checks = append $checks (list "redis.password" $r.password.existingSecret $r.password.key "") -}}
{{- end -}}
{{- range $checks -}}
{{- $s := lookup "v1" "Secret" $.Release.Namespace (index . 1) -}}
{{- if and $s (not (hasKey ($s.data | default dict) (index . 2))) -}}
{{- fail (printf "%s: the Secret %s has no key %q (%s.key)%s" (index . 0) (index . 1) (index . 2) (index . 0) (index . 3)) -}}
{{- end -}}
{{- end -}}
{{- end }}
