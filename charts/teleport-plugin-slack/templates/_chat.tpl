{{/* What is particular to Slack; every other template is the same in the three charts. */}}

{{- define "plugin.chat" -}}
slack
{{- end }}

{{/* Where the token is mounted, as the official chart mounts it. */}}
{{- define "plugin.tokenFile" -}}
/var/lib/teleport/plugins/slack/slack-token
{{- end }}

{{- define "plugin.chatConfig" -}}
[slack]
token = {{ include "plugin.tokenFile" . | toJson }}
{{- with .Values.slack.apiUrl }}
api_url = {{ . | toJson }}
{{- end }}

[role_to_recipients]
{{- include "plugin.roleToRecipientsLines" . }}
{{- if .Values.review.enabled }}

# Approve/deny buttons in Slack are not supported by this plugin: it ignores
# this section and says so in its log at start.
[review]
enabled = true
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
{{- end }}
