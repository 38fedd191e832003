{{/* What is particular to Discord; every other template is the same in the three charts. */}}

{{- define "plugin.chat" -}}
discord
{{- end }}

{{/* Where the token is mounted, as the official chart mounts it. */}}
{{- define "plugin.tokenFile" -}}
/var/lib/teleport/plugins/discord/discord-token
{{- end }}

{{/* Review from chat: the path Discord POSTs interactions to (with discord.publicKey). */}}
{{- define "plugin.callbackPath" -}}
/discord/interactions
{{- end }}

{{/* Discord signs its interactions with the application's key pair: no secret of ours. */}}
{{- define "plugin.signingSecretValue" -}}
{{- end }}

{{/* Discord calls from the internet: no in-cluster default for publicAddr. */}}
{{- define "plugin.publicAddrFromService" -}}
{{- end }}

{{/* Whether clicks arrive over HTTP (the interactions endpoint) rather than the Gateway. */}}
{{- define "plugin.discordHttp" -}}
{{- if and (include "plugin.reviewEnabled" .) .Values.discord.publicKey }}true{{ end }}
{{- end }}

{{- define "plugin.chatConfig" -}}
[discord]
token = {{ include "plugin.tokenFile" . | toJson }}
{{- if include "plugin.discordHttp" . }}
# The application's public key: interactions POSTed to the callback listener
# are accepted only with a valid Ed25519 signature by Discord.
public_key = {{ .Values.discord.publicKey | toJson }}
{{- end }}
{{- with .Values.discord.apiUrl }}
api_url = {{ . | toJson }}
{{- end }}
{{- with .Values.discord.users }}

# Teleport user -> Discord user ID: requesters get a DM on resolution.
[discord.users]
{{- range $user, $id := . }}
{{ $user | toJson }} = {{ $id | toJson }}
{{- end }}
{{- end }}
{{- if include "plugin.reviewEnabled" . }}

# Approve and Deny buttons on the messages. A click is reviewed as the
# Teleport user whose user_id_trait holds the clicker's Discord user ID.
[discord.review]
enabled = true
{{- with .Values.review.userIdTrait }}
user_id_trait = {{ . | toJson }}
{{- end }}
allow_email_username_match = {{ .Values.review.allowEmailUsernameMatch | default false | toJson }}
{{- end }}

[role_to_recipients]
{{- include "plugin.roleToRecipientsLines" . }}
{{- end }}

{{- define "plugin.validateChat" -}}
{{- if and (not .Values.routing.crd) (not (get .Values.roleToRecipients "*")) }}
{{- fail "roleToRecipients must map \"*\" to the default recipients (a Discord channel ID, or a list), for roles without their own entry; it is optional only with routing.crd=true" }}
{{- end }}
{{- if include "plugin.reviewEnabled" . }}
{{- $ia := include "plugin.interactivity" . | fromJson }}
{{- if and .Values.discord.publicKey (not $ia.enabled) }}
{{- fail "discord.publicKey needs interactivity.enabled=true: with the public key Discord POSTs the clicks to the plugin's callback listener (its Interactions Endpoint URL, interactivity.publicAddr + /discord/interactions), which interactivity.enabled turns on; for clicks over the Gateway (no listener, no public address) drop discord.publicKey" }}
{{- end }}
{{- if and $ia.enabled (not .Values.discord.publicKey) }}
{{- fail "interactivity.enabled needs discord.publicKey: the callback listener accepts only interactions signed by Discord, checked with the application's public key (Developer Portal > General Information); for clicks over the Gateway alone set interactivity.enabled=false" }}
{{- end }}
{{- if and $ia.enabled (eq (int $ia.port) (int .Values.http.port)) }}
{{- fail (printf "interactivity.port (%d) must differ from http.port: the callback listener and the health and metrics endpoints are separate listeners" (int $ia.port)) }}
{{- end }}
{{- if and $ia.ingress.enabled (not $ia.enabled) }}
{{- fail "interactivity.ingress.enabled needs interactivity.enabled=true: the Ingress routes to the callback listener" }}
{{- end }}
{{- if and $ia.ingress.enabled (not $ia.ingress.host) }}
{{- fail "interactivity.ingress.host is required with interactivity.ingress.enabled: the host name of the Interactions Endpoint URL (https://<host>/discord/interactions)" }}
{{- end }}
{{- end }}
{{- end }}

{{/* The end of NOTES.txt with review on: how to finish the Discord application. */}}
{{- define "plugin.reviewNotes" -}}
{{- $trait := .Values.review.userIdTrait | default "discord_user_id" -}}
Review from Discord is on: messages get Approve and Deny buttons. To finish:
{{ if include "plugin.discordHttp" . }}
{{- with include "plugin.publicAddr" . }}
- HTTP: in the Developer Portal (https://discord.com/developers/applications),
  General Information, set the Interactions Endpoint URL to
  {{ . }}{{ include "plugin.callbackPath" $ }}
{{- else }}
- HTTP: in the Developer Portal (https://discord.com/developers/applications),
  General Information, set the Interactions Endpoint URL to
  https://<the address Discord reaches Service {{ include "plugin.callbacksName" . }}>{{ include "plugin.callbackPath" . }}
  (set interactivity.publicAddr or interactivity.ingress to have it shown here).
{{- end }}
  Discord checks the URL when it is saved, so the plugin must be running and
  reachable over HTTPS first; discord.publicKey must be the same application's
  Public Key. While the URL is set, clicks arrive there and not over the
  Gateway.
{{- else }}
- Clicks arrive over the Gateway (the bot's outbound WebSocket): no public
  address is needed. Leave the application's Interactions Endpoint URL empty
  (Developer Portal > General Information), or Discord sends the clicks
  there instead.
{{- end }}
- The plugin's Teleport role must allow review_requests.submit_for_users:
  deploy/teleport/plugin-role-review.yaml in the repository. A review from
  Discord skips Teleport MFA and device trust: give the plugin a short-lived
  tbot identity.
- Each reviewer's Teleport user needs the trait {{ $trait }} holding their
  Discord user ID (digits; in Discord: Developer Mode on, then the user's
  profile, Copy User ID), or an entry in discord.users.
{{- if .Values.review.allowEmailUsernameMatch }}
  review.allowEmailUsernameMatch maps no one: Discord does not show a bot its
  users' emails.
{{- end }}
- Reviewers also need a Teleport role whose review_requests.roles covers the
  requested roles.
{{- end }}
