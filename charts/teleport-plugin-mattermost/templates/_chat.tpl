{{/* What is particular to Mattermost; every other template is the same in the three charts. */}}

{{- define "plugin.chat" -}}
mattermost
{{- end }}

{{/* Where the token is mounted, as the official chart mounts it (with an underscore). */}}
{{- define "plugin.tokenFile" -}}
/var/lib/teleport/plugins/mattermost/mattermost_token
{{- end }}

{{/* Review from chat: the path of the buttons' integration URL Mattermost calls. */}}
{{- define "plugin.callbackPath" -}}
/mattermost/actions
{{- end }}

{{/* The values of the secret that signs the buttons: mattermost.secret*. */}}
{{- define "plugin.signingSecretValue" -}}
secret
{{- end }}

{{/*
The Mattermost server calls the plugin, usually from inside the cluster: with
no publicAddr and no ingress, the callbacks Service's in-cluster URL.
*/}}
{{- define "plugin.publicAddrFromService" -}}
true
{{- end }}

{{- define "plugin.chatConfig" -}}
[mattermost]
url = {{ .Values.mattermost.url | toJson }}
token = {{ include "plugin.tokenFile" . | toJson }}
{{- if include "plugin.hasSigningSecret" . }}
# Signs the buttons' contexts; a click is accepted only with a valid signature.
secret = {{ include "plugin.signingSecretFile" . | toJson }}
{{- end }}
{{- with .Values.mattermost.recipients }}
# Every request goes to these; this replaces [role_to_recipients].
recipients = {{ . | toJson }}
{{- end }}
{{- if and .Values.mattermost.team .Values.mattermost.channel }}
# The default recipient team/channel, where no other routing names one.
team = {{ .Values.mattermost.team | toJson }}
channel = {{ .Values.mattermost.channel | toJson }}
{{- end }}
{{- if include "plugin.reviewEnabled" . }}

# Approve and Deny buttons on the posts. A click is reviewed as the Teleport
# user whose user_id_trait holds the clicker's Mattermost user ID.
[mattermost.review]
enabled = true
{{- with .Values.review.userIdTrait }}
user_id_trait = {{ . | toJson }}
{{- end }}
allow_email_username_match = {{ .Values.review.allowEmailUsernameMatch | default false | toJson }}
{{- end }}
{{- if and (not .Values.mattermost.recipients) .Values.roleToRecipients }}

[role_to_recipients]
{{- include "plugin.roleToRecipientsLines" . }}
{{- end }}
{{- end }}

{{- define "plugin.validateChat" -}}
{{- $m := .Values.mattermost }}
{{- if not $m.url }}
{{- fail "mattermost.url is required: the address of your Mattermost server, e.g. https://mattermost.example.com" }}
{{- end }}
{{- if or (and $m.team (not $m.channel)) (and $m.channel (not $m.team)) }}
{{- fail "mattermost.team and mattermost.channel name the default recipient together (team/channel, as in the channel's URL): set both or neither" }}
{{- end }}
{{- if not (or $m.recipients .Values.roleToRecipients $m.team .Values.routing.crd) }}
{{- fail "mattermost.recipients is required: the team/channel names or emails to notify (or set roleToRecipients per role, mattermost.team with mattermost.channel, or routing.crd=true)" }}
{{- end }}
{{- if include "plugin.reviewEnabled" . }}
{{- $ia := include "plugin.interactivity" . | fromJson }}
{{- if not (include "plugin.hasSigningSecret" .) }}
{{- fail "review.enabled needs mattermost.secret or mattermost.secretFromSecret: a random key that signs the buttons (e.g. from `openssl rand -hex 32`); the plugin accepts only clicks carrying its signature" }}
{{- end }}
{{- if not $ia.enabled }}
{{- fail "review.enabled needs interactivity.enabled=true: Mattermost POSTs the clicks to the plugin's callback listener (interactivity.publicAddr + /mattermost/actions; by default the in-cluster URL of Service <fullname>-callbacks)" }}
{{- end }}
{{- if eq (int $ia.port) (int .Values.http.port) }}
{{- fail (printf "interactivity.port (%d) must differ from http.port: the callback listener and the health and metrics endpoints are separate listeners" (int $ia.port)) }}
{{- end }}
{{- if and $ia.ingress.enabled (not $ia.ingress.host) }}
{{- fail "interactivity.ingress.host is required with interactivity.ingress.enabled: the host name Mattermost calls (https://<host>/mattermost/actions)" }}
{{- end }}
{{- end }}
{{- end }}

{{/* The end of NOTES.txt with review on: how to finish the Mattermost side. */}}
{{- define "plugin.reviewNotes" -}}
{{- $ia := include "plugin.interactivity" . | fromJson }}
{{- $trait := .Values.review.userIdTrait | default "mattermost_user_id" -}}
{{- $url := printf "%s%s" (include "plugin.publicAddr" .) (include "plugin.callbackPath" .) -}}
Review from Mattermost is on: posts get Approve and Deny buttons. Mattermost
POSTs each click to {{ $url }}
(the buttons' integration URL). To finish:

- The Mattermost server must reach that URL.
{{- if not (or $ia.publicAddr $ia.ingress.enabled) }}
  It is Service {{ include "plugin.callbacksName" . }} inside the cluster: Mattermost
  refuses calls to internal addresses unless they are allowed. In the System
  Console (Environment > Developer > Allow untrusted internal connections to),
  or ServiceSettings.AllowedUntrustedInternalConnections in config.json, add:
    {{ include "plugin.callbacksName" . }}.{{ .Release.Namespace }}.svc
  (a Mattermost outside the cluster: set interactivity.publicAddr or
  interactivity.ingress to an address it reaches).
{{- else }}
  If that address is internal to your network, add its host to the
  Mattermost server's ServiceSettings.AllowedUntrustedInternalConnections
  (System Console > Environment > Developer).
{{- end }}
- The plugin's Teleport role must allow review_requests.submit_for_users:
  deploy/teleport/plugin-role-review.yaml in the repository. A review from
  Mattermost skips Teleport MFA and device trust: give the plugin a
  short-lived tbot identity.
- Each reviewer's Teleport user needs the trait {{ $trait }} holding their
  Mattermost user ID (26 characters; System Console > Users, or
  GET /api/v4/users/username/<name>)
{{- if .Values.review.allowEmailUsernameMatch }},
  or a user name equal to their Mattermost email (verified){{ end }}.
- Reviewers also need a Teleport role whose review_requests.roles covers the
  requested roles.
{{- end }}
