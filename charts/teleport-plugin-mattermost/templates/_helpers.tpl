{{/*
Helpers shared by the three teleport-plugin charts. This file is identical in
every chart; what differs per chat lives in _chat.tpl.
*/}}

{{- define "plugin.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified app name, truncated to 63 characters (DNS label limit).
A release name that already contains the chart name is used as is.
*/}}
{{- define "plugin.fullname" -}}
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

{{- define "plugin.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "plugin.labels" -}}
helm.sh/chart: {{ include "plugin.chart" . }}
{{ include "plugin.selectorLabels" . }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "plugin.selectorLabels" -}}
app.kubernetes.io/name: {{ include "plugin.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "plugin.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "plugin.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The chat's own values block (.Values.slack, .Values.discord, ...). */}}
{{- define "plugin.chatValues" -}}
{{- index .Values (include "plugin.chat" .) | toJson }}
{{- end }}

{{- define "plugin.configFileName" -}}
teleport-{{ include "plugin.chat" . }}.toml
{{- end }}

{{- define "plugin.configPath" -}}
/etc/{{ include "plugin.configFileName" . }}
{{- end }}

{{- define "plugin.identityDir" -}}
/var/lib/teleport/plugins/{{ include "plugin.chat" . }}/teleport-identity
{{- end }}

{{/*
Teleport address: teleport.address, else the address tbot joins (as the
official charts do).
*/}}
{{- define "plugin.teleportAddress" -}}
{{- coalesce .Values.teleport.address .Values.tbot.teleportProxyAddress .Values.tbot.teleportAuthAddress | default "" }}
{{- end }}

{{/* tbot's name, as the official tbot subchart with nameOverride=tbot names it. */}}
{{- define "plugin.tbot.fullname" -}}
{{- if .Values.tbot.fullnameOverride }}
{{- .Values.tbot.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name (default "tbot" .Values.tbot.nameOverride) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "plugin.tbot.serviceAccountName" -}}
{{- default (include "plugin.tbot.fullname" .) .Values.tbot.serviceAccount.name }}
{{- end }}

{{- define "plugin.tbot.tokenName" -}}
{{- default (include "plugin.tbot.fullname" .) .Values.tbot.token }}
{{- end }}

{{/*
The Secret holding the identity: teleport.identitySecretName, else (with
tbot) the Secret tbot writes. tbot writes to this same name, so the two
always agree.
*/}}
{{- define "plugin.identitySecretName" -}}
{{- if .Values.teleport.identitySecretName }}
{{- .Values.teleport.identitySecretName }}
{{- else if .Values.tbot.enabled }}
{{- default (printf "%s-out" (include "plugin.tbot.fullname" .)) .Values.tbot.defaultOutput.secretName }}
{{- end }}
{{- end }}

{{/* The key of the identity in that Secret: tbot always writes `identity`. */}}
{{- define "plugin.identitySecretKey" -}}
{{- if .Values.tbot.enabled }}
{{- "identity" }}
{{- else }}
{{- default "auth_id" .Values.teleport.identitySecretPath }}
{{- end }}
{{- end }}

{{/* Whether the plugin reads the identity Secret through the Kubernetes API. */}}
{{- define "plugin.identityFromApi" -}}
{{- if ne .Values.teleport.identityAccess "mount" }}true{{ end }}
{{- end }}

{{- define "plugin.routingNamespace" -}}
{{- default .Release.Namespace .Values.routing.namespace }}
{{- end }}

{{/* Whether the pod talks to the Kubernetes API at all. */}}
{{- define "plugin.needsKubeApi" -}}
{{- if or (include "plugin.identityFromApi" .) .Values.routing.crd }}true{{ end }}
{{- end }}

{{- define "plugin.tokenSecretName" -}}
{{- $chat := include "plugin.chatValues" . | fromJson }}
{{- default (printf "%s-secret" (include "plugin.fullname" .)) $chat.tokenFromSecret }}
{{- end }}

{{- define "plugin.tokenSecretKey" -}}
{{- $chat := include "plugin.chatValues" . | fromJson }}
{{- default (printf "%sToken" (include "plugin.chat" .)) $chat.tokenSecretPath }}
{{- end }}

{{/*
Review from chat: Approve and Deny buttons, and where the clicks arrive. What
differs per chat (the path the chat calls, the name of the secret that signs
the clicks, the default public address) comes from _chat.tpl.
*/}}
{{- define "plugin.reviewEnabled" -}}
{{- if (.Values.review | default dict).enabled }}true{{ end }}
{{- end }}

{{/* The app-level token (Socket Mode): a file from a Secret, like the bot token. */}}
{{- define "plugin.appTokenFile" -}}
/var/lib/teleport/plugins/{{ include "plugin.chat" . }}/{{ include "plugin.chat" . }}-app-token
{{- end }}

{{- define "plugin.appTokenSecretName" -}}
{{- default (printf "%s-app-token-secret" (include "plugin.fullname" .)) .Values.review.appTokenFromSecret }}
{{- end }}

{{- define "plugin.appTokenSecretKey" -}}
{{- default (printf "%sAppToken" (include "plugin.chat" .)) .Values.review.appTokenSecretPath }}
{{- end }}

{{- define "plugin.hasAppToken" -}}
{{- if and (include "plugin.reviewEnabled" .) (or .Values.review.appToken .Values.review.appTokenFromSecret) }}true{{ end }}
{{- end }}

{{/*
The secret that signs the clicks (Slack's signing secret, Mattermost's
secret): a file from a Secret too. Its values are <key>, <key>FromSecret and
<key>SecretPath in the chat's block, <key> named by plugin.signingSecretValue;
a chat without one names none.
*/}}
{{- define "plugin.signingSecretFile" -}}
/var/lib/teleport/plugins/{{ include "plugin.chat" . }}/{{ include "plugin.chat" . }}-signing-secret
{{- end }}

{{/* The inline signing secret, or "". */}}
{{- define "plugin.signingSecretInline" -}}
{{- $chat := include "plugin.chatValues" . | fromJson }}
{{- with include "plugin.signingSecretValue" . }}{{ get $chat . | default "" }}{{ end }}
{{- end }}

{{/* The existing Secret named for it, or "". */}}
{{- define "plugin.signingSecretFromSecret" -}}
{{- $chat := include "plugin.chatValues" . | fromJson }}
{{- with include "plugin.signingSecretValue" . }}{{ get $chat (printf "%sFromSecret" .) | default "" }}{{ end }}
{{- end }}

{{- define "plugin.signingSecretName" -}}
{{- default (printf "%s-signing-secret" (include "plugin.fullname" .)) (include "plugin.signingSecretFromSecret" .) }}
{{- end }}

{{- define "plugin.signingSecretKey" -}}
{{- $chat := include "plugin.chatValues" . | fromJson }}
{{- $k := include "plugin.signingSecretValue" . | default "signingSecret" }}
{{- default (printf "%s%s" (include "plugin.chat" .) (title $k)) (get $chat (printf "%sSecretPath" $k)) }}
{{- end }}

{{- define "plugin.hasSigningSecret" -}}
{{- if and (include "plugin.reviewEnabled" .) (or (include "plugin.signingSecretInline" .) (include "plugin.signingSecretFromSecret" .)) }}true{{ end }}
{{- end }}

{{/* The interactivity values, with the nested blocks always present. */}}
{{- define "plugin.interactivity" -}}
{{- $ia := deepCopy (.Values.interactivity | default dict) }}
{{- $_ := set $ia "service" ($ia.service | default dict) }}
{{- $_ := set $ia "ingress" ($ia.ingress | default dict) }}
{{- $ia | toJson }}
{{- end }}

{{/* Whether the callback listener runs: review on and interactivity enabled. */}}
{{- define "plugin.callbacksOn" -}}
{{- if and (include "plugin.reviewEnabled" .) (.Values.interactivity | default dict).enabled }}true{{ end }}
{{- end }}

{{/* Room for the suffix: a cut name would be the metrics Service's. */}}
{{- define "plugin.callbacksName" -}}
{{- printf "%s-callbacks" (include "plugin.fullname" . | trunc 53 | trimSuffix "-") }}
{{- end }}

{{- define "plugin.callbackTlsDir" -}}
/var/lib/teleport/plugins/{{ include "plugin.chat" . }}/callback-tls
{{- end }}

{{/*
Where the chat reaches the listener: publicAddr, else the ingress host, else
(for a chat server inside the cluster, plugin.publicAddrFromService) the
callbacks Service's in-cluster URL.
*/}}
{{- define "plugin.publicAddr" -}}
{{- $ia := include "plugin.interactivity" . | fromJson }}
{{- if $ia.publicAddr }}
{{- $ia.publicAddr }}
{{- else if and $ia.ingress.enabled $ia.ingress.host }}
{{- printf "https://%s" $ia.ingress.host }}
{{- else if include "plugin.publicAddrFromService" . }}
{{- include "plugin.serviceUrl" . }}
{{- end }}
{{- end }}

{{/* The callbacks Service inside the cluster (https when the listener serves TLS). */}}
{{- define "plugin.serviceUrl" -}}
{{- $ia := include "plugin.interactivity" . | fromJson }}
{{- printf "%s://%s.%s.svc:%d" (ternary "https" "http" (not (empty $ia.tlsSecretName))) (include "plugin.callbacksName" .) .Release.Namespace (int ($ia.service.port | default $ia.port)) }}
{{- end }}

{{/*
The configuration file (TOML). Every value goes through toJson: a JSON string
is a valid TOML basic string, so quotes and backslashes in values cannot break
the file.
*/}}
{{- define "plugin.config" -}}
{{- include "plugin.validate" . -}}
[teleport]
addr = {{ include "plugin.teleportAddress" . | toJson }}
{{- if include "plugin.identityFromApi" . }}
# Read through the Kubernetes API and followed live: a renewed identity
# (tbot renews it) is used as soon as it is written.
identity_secret = { name = {{ include "plugin.identitySecretName" . | toJson }}, key = {{ include "plugin.identitySecretKey" . | toJson }}, namespace = {{ .Release.Namespace | toJson }} }
{{- else }}
identity = {{ printf "%s/%s" (include "plugin.identityDir" .) (include "plugin.identitySecretKey" .) | toJson }}
refresh_identity = true
{{- end }}
{{- with .Values.teleport.connection }}
connection = {{ . | toJson }}
{{- end }}

{{ include "plugin.chatConfig" . }}

[log]
output = {{ .Values.log.output | default "stdout" | toJson }}
severity = {{ .Values.log.severity | default "INFO" | toJson }}
format = {{ .Values.log.format | default "text" | toJson }}

[http]
# /healthz, /readyz and /metrics (probes and scraping).
listen = {{ printf "0.0.0.0:%v" .Values.http.port | toJson }}
{{- if include "plugin.callbacksOn" . }}
{{- $ia := include "plugin.interactivity" . | fromJson }}
# The callback listener: the chat POSTs button clicks to {{ include "plugin.callbackPath" . }}
# on its own port (Service {{ include "plugin.callbacksName" . }}).
listen_addr = {{ printf "0.0.0.0:%d" (int $ia.port) | toJson }}
{{- with include "plugin.publicAddr" . }}
public_addr = {{ . | toJson }}
{{- end }}
{{- if $ia.tlsSecretName }}
https_key_file = {{ printf "%s/tls.key" (include "plugin.callbackTlsDir" .) | toJson }}
https_cert_file = {{ printf "%s/tls.crt" (include "plugin.callbackTlsDir" .) | toJson }}
{{- end }}
{{- end }}
{{- if or .Values.plugin.concurrency .Values.plugin.claimLease .Values.plugin.shutdownGrace }}

# instance_id is left to its default, the pod name: unique per replica.
[plugin]
{{- end }}
{{- with .Values.plugin.concurrency }}
concurrency = {{ int . }}
{{- end }}
{{- with .Values.plugin.claimLease }}
claim_lease = {{ . | toJson }}
{{- end }}
{{- with .Values.plugin.shutdownGrace }}
shutdown_grace = {{ . | toJson }}
{{- end }}
{{- if .Values.routing.crd }}

[routing]
crd = true
namespace = {{ include "plugin.routingNamespace" . | toJson }}
{{- end }}
{{- end }}

{{/* Role recipients as TOML lines (`"role" = "x"` or `"role" = ["x", "y"]`). */}}
{{- define "plugin.roleToRecipientsLines" -}}
{{- range $role, $recipients := .Values.roleToRecipients }}
{{ $role | toJson }} = {{ $recipients | toJson }}
{{- end }}
{{- end }}

{{/*
Checks that fail the install with a message naming the value to set, before
anything reaches the cluster. The plugin checks the same again at start.
*/}}
{{- define "plugin.validate" -}}
{{- $chat := include "plugin.chat" . }}
{{- $cv := include "plugin.chatValues" . | fromJson }}
{{- if not (include "plugin.teleportAddress" .) }}
{{- fail "teleport.address is required: the Teleport Proxy (teleport.example.com:443) or Auth (auth.example.com:3025) address; with tbot.enabled, tbot.teleportProxyAddress or tbot.teleportAuthAddress is used when it is empty" }}
{{- end }}
{{- if not (include "plugin.identitySecretName" .) }}
{{- fail "teleport.identitySecretName is required: the Secret holding the plugin's identity (or set tbot.enabled=true to have tbot write it)" }}
{{- end }}
{{- if not (has .Values.teleport.identityAccess (list "api" "mount")) }}
{{- fail (printf "teleport.identityAccess must be \"api\" or \"mount\", not %q" .Values.teleport.identityAccess) }}
{{- end }}
{{- if and (not $cv.token) (not $cv.tokenFromSecret) }}
{{- fail (printf "%s.token or %s.tokenFromSecret is required: the bot token, or the name of an existing Secret holding it (key %s.tokenSecretPath)" $chat $chat $chat) }}
{{- end }}
{{- if .Values.tbot.enabled }}
{{- if not .Values.tbot.clusterName }}
{{- fail "tbot.clusterName is required when tbot.enabled: the name of the Teleport cluster tbot joins" }}
{{- end }}
{{- if not (or .Values.tbot.teleportProxyAddress .Values.tbot.teleportAuthAddress) }}
{{- fail "tbot.teleportProxyAddress or tbot.teleportAuthAddress is required when tbot.enabled" }}
{{- end }}
{{- if and .Values.tbot.teleportProxyAddress .Values.tbot.teleportAuthAddress }}
{{- fail "tbot.teleportProxyAddress and tbot.teleportAuthAddress are mutually exclusive" }}
{{- end }}
{{- if not .Values.tbot.defaultOutput.enabled }}
{{- fail "tbot.defaultOutput.enabled must stay true: it is the identity output the plugin reads" }}
{{- end }}
{{- end }}
{{- include "plugin.validateChat" . }}
{{- end }}

{{- define "plugin.tbot.labels" -}}
helm.sh/chart: {{ include "plugin.chart" . }}
{{ include "plugin.tbot.selectorLabels" . }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "plugin.tbot.selectorLabels" -}}
app.kubernetes.io/name: tbot
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: tbot
{{- end }}

{{- define "plugin.tbot.storageSecretName" -}}
{{- include "plugin.tbot.fullname" . }}
{{- end }}

{{- define "plugin.crd.namespace" -}}
{{- default .Release.Namespace .Values.crd.namespace }}
{{- end }}

{{/* The TeleportProvisionToken join spec, as the official charts build it. */}}
{{- define "plugin.crd.defaultKubeJoinSpec" -}}
join_method: kubernetes
kubernetes:
  type: in_cluster
  allow:
  - service_account: "{{ .Release.Namespace }}:{{ include "plugin.tbot.serviceAccountName" . }}"
{{- end }}

{{- define "plugin.crd.tokenJoinSpec" -}}
{{- $override := .Values.crd.tokenSpecOverride | default dict }}
{{- if and (hasKey $override "join_method") (ne $override.join_method .Values.tbot.joinMethod) }}
{{- fail "crd.tokenSpecOverride.join_method must be the same as tbot.joinMethod" }}
{{- end }}
{{- if eq .Values.tbot.joinMethod "kubernetes" }}
{{- mustMergeOverwrite (include "plugin.crd.defaultKubeJoinSpec" . | fromYaml) $override | toYaml }}
{{- else }}
{{- if empty $override }}
{{- fail "crd.tokenSpecOverride is required when tbot.joinMethod is not kubernetes: the TeleportProvisionToken spec for that join method" }}
{{- end }}
{{- if not (hasKey $override "join_method") }}
{{- fail "crd.tokenSpecOverride.join_method is required (it must equal tbot.joinMethod)" }}
{{- end }}
{{- $override | toYaml }}
{{- end }}
{{- end }}

{{/* RBAC rules for following AccessRequestRoute resources. */}}
{{- define "plugin.routeRules" -}}
- apiGroups: ["notify.accessrequests.dev"]
  resources: ["accessrequestroutes"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["notify.accessrequests.dev"]
  resources: ["accessrequestroutes/status"]
  verbs: ["patch"]
{{- end }}

{{/* tbot's configuration: join, then write the identity to the plugin's Secret. */}}
{{- define "plugin.tbot.config" -}}
{{- $t := .Values.tbot -}}
version: v2
{{- if $t.teleportProxyAddress }}
proxy_server: {{ $t.teleportProxyAddress | quote }}
{{- end }}
{{- if $t.teleportAuthAddress }}
auth_server: {{ $t.teleportAuthAddress | quote }}
{{- end }}
onboarding:
  join_method: {{ $t.joinMethod | quote }}
  token: {{ include "plugin.tbot.tokenName" . | quote }}
storage:
{{- if eq $t.persistence "secret" }}
  type: kubernetes_secret
  name: {{ include "plugin.tbot.storageSecretName" . | quote }}
{{- else if eq $t.persistence "disabled" }}
  type: memory
{{- else }}
{{- fail "tbot.persistence must be \"disabled\" (memory) or \"secret\"" }}
{{- end }}
outputs:
  - type: identity
    destination:
      type: kubernetes_secret
      name: {{ include "plugin.identitySecretName" . | quote }}
{{- end }}
