{{/* What is particular to Slack; every other template is the same in the three charts. */}}

{{- define "plugin.chat" -}}
slack
{{- end }}

{{/* Where the token is mounted, as the official chart mounts it. */}}
{{- define "plugin.tokenFile" -}}
/var/lib/teleport/plugins/slack/slack-token
{{- end }}

{{/* Review from chat: the path Slack POSTs clicks to (HTTP interactivity). */}}
{{- define "plugin.callbackPath" -}}
/slack/interactions
{{- end }}

{{/* The values of the secret that signs the clicks: slack.signingSecret*. */}}
{{- define "plugin.signingSecretValue" -}}
signingSecret
{{- end }}

{{/* Slack calls from the internet: no in-cluster default for publicAddr. */}}
{{- define "plugin.publicAddrFromService" -}}
{{- end }}

{{- define "plugin.chatConfig" -}}
[slack]
token = {{ include "plugin.tokenFile" . | toJson }}
{{- if include "plugin.hasSigningSecret" . }}
# Verifies that the clicks POSTed to the callback listener come from Slack.
signing_secret = {{ include "plugin.signingSecretFile" . | toJson }}
{{- end }}
{{- with .Values.slack.apiUrl }}
api_url = {{ . | toJson }}
{{- end }}

[role_to_recipients]
{{- include "plugin.roleToRecipientsLines" . }}
{{- if include "plugin.reviewEnabled" . }}

# Approve and Deny buttons on the cards. A click is reviewed as the Teleport
# user whose slack_user_id_trait holds the clicker's Slack user ID.
[review]
enabled = true
{{- if include "plugin.hasAppToken" . }}
# Socket Mode: the plugin connects out to Slack with this app-level token.
app_token = {{ include "plugin.appTokenFile" . | toJson }}
{{- end }}
{{- with .Values.review.slackUserIdTrait }}
slack_user_id_trait = {{ . | toJson }}
{{- end }}
allow_email_username_match = {{ .Values.review.allowEmailUsernameMatch | default false | toJson }}
{{- end }}
{{- end }}

{{- define "plugin.validateChat" -}}
{{- if and (not .Values.routing.crd) (not (get .Values.roleToRecipients "*")) }}
{{- fail "roleToRecipients must map \"*\" to the default recipients (a channel, e.g. \"#access-requests\", or a list), for roles without their own entry; it is optional only with routing.crd=true" }}
{{- end }}
{{- if include "plugin.reviewEnabled" . }}
{{- $ia := include "plugin.interactivity" . | fromJson }}
{{- if not (or (include "plugin.hasAppToken" .) (include "plugin.hasSigningSecret" .)) }}
{{- fail "review.enabled needs a way for Slack to deliver the clicks: review.appToken or review.appTokenFromSecret (an app-level token, xapp-..., for Socket Mode: the plugin connects out, no public address), or slack.signingSecret or slack.signingSecretFromSecret with interactivity.enabled=true (Slack POSTs the clicks to interactivity.publicAddr + /slack/interactions)" }}
{{- end }}
{{- if and (include "plugin.hasSigningSecret" .) (not $ia.enabled) }}
{{- fail "slack.signingSecret needs interactivity.enabled=true: the signing secret verifies the clicks Slack POSTs to the plugin's callback listener, which interactivity.enabled turns on (expose it with interactivity.ingress or interactivity.service, and set interactivity.publicAddr); for Socket Mode set review.appToken and drop slack.signingSecret" }}
{{- end }}
{{- if and $ia.enabled (not (include "plugin.hasSigningSecret" .)) }}
{{- fail "interactivity.enabled needs slack.signingSecret or slack.signingSecretFromSecret: the callback listener accepts only clicks signed with the Slack app's signing secret (Basic Information > App Credentials); with Socket Mode alone (review.appToken) set interactivity.enabled=false" }}
{{- end }}
{{- if and $ia.enabled (eq (int $ia.port) (int .Values.http.port)) }}
{{- fail (printf "interactivity.port (%d) must differ from http.port: the callback listener and the health and metrics endpoints are separate listeners" (int $ia.port)) }}
{{- end }}
{{- if and $ia.ingress.enabled (not $ia.enabled) }}
{{- fail "interactivity.ingress.enabled needs interactivity.enabled=true: the Ingress routes to the callback listener" }}
{{- end }}
{{- if and $ia.ingress.enabled (not $ia.ingress.host) }}
{{- fail "interactivity.ingress.host is required with interactivity.ingress.enabled: the host name of the Slack app's Request URL (https://<host>/slack/interactions)" }}
{{- end }}
{{- end }}
{{- end }}

{{/* The end of NOTES.txt with review on: how to finish the Slack app. */}}
{{- define "plugin.reviewNotes" -}}
{{- $ia := include "plugin.interactivity" . | fromJson }}
{{- $trait := .Values.review.slackUserIdTrait | default "slack_user_id" -}}
Review from Slack is on: pending cards get Approve and Deny buttons. To finish:

- In the Slack app's settings (https://api.slack.com/apps), turn on
  Interactivity & Shortcuts.
{{- if include "plugin.hasAppToken" . }}
- Socket Mode: turn Socket Mode on. The app-level token (Basic Information >
  App-Level Tokens) needs the scope connections:write. The plugin connects out
  to Slack; no public address is needed.
{{- end }}
{{- if include "plugin.hasSigningSecret" . }}
{{- with include "plugin.publicAddr" . }}
- HTTP: set the Request URL to {{ . }}{{ include "plugin.callbackPath" $ }}
{{- else }}
- HTTP: set the Request URL to https://<the address Slack reaches Service {{ include "plugin.callbacksName" . }}>{{ include "plugin.callbackPath" . }}
  (set interactivity.publicAddr or interactivity.ingress to have it shown here).
{{- end }}
  Clicks must be signed with the signing secret of the same app.
{{- end }}
{{- if and (include "plugin.hasAppToken" .) (include "plugin.hasSigningSecret" .) }}

  WARNING: both review.appToken and slack.signingSecret are set. A Slack app
  delivers clicks one way: over Socket Mode while it is on, else to the
  Request URL. Keep the one you use.
{{- end }}
- Bot scopes: chat:write (the answers to the clicker){{ if .Values.review.allowEmailUsernameMatch }}, and users:read
  with users:read.email (email matching is on){{ end }}.
- The plugin's Teleport role must allow review_requests.submit_for_users:
  deploy/teleport/plugin-role-review.yaml in the repository. A review from
  Slack skips Teleport MFA and device trust: give the plugin a short-lived tbot
  identity.
- Each reviewer's Teleport user needs the trait {{ $trait }} holding their
  Slack member ID (U...; in Slack: profile, More, Copy member ID)
{{- if .Values.review.allowEmailUsernameMatch }},
  or a user name equal to their verified Slack email{{ end }}.
- Reviewers also need a Teleport role whose review_requests.roles covers the
  requested roles.
{{- end }}
