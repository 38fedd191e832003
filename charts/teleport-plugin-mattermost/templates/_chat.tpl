{{/* What is particular to Mattermost; every other template is the same in the three charts. */}}

{{- define "plugin.chat" -}}
mattermost
{{- end }}

{{/* Where the token is mounted, as the official chart mounts it (with an underscore). */}}
{{- define "plugin.tokenFile" -}}
/var/lib/teleport/plugins/mattermost/mattermost_token
{{- end }}

{{- define "plugin.chatConfig" -}}
[mattermost]
url = {{ .Values.mattermost.url | toJson }}
token = {{ include "plugin.tokenFile" . | toJson }}
{{- with .Values.mattermost.recipients }}
# Every request goes to these; this replaces [role_to_recipients].
recipients = {{ . | toJson }}
{{- end }}
{{- if and (not .Values.mattermost.recipients) .Values.roleToRecipients }}

[role_to_recipients]
{{- include "plugin.roleToRecipientsLines" . }}
{{- end }}
{{- end }}

{{- define "plugin.validateChat" -}}
{{- if not .Values.mattermost.url }}
{{- fail "mattermost.url is required: the address of your Mattermost server, e.g. https://mattermost.example.com" }}
{{- end }}
{{- if not (or .Values.mattermost.recipients .Values.roleToRecipients .Values.routing.crd) }}
{{- fail "mattermost.recipients is required: the team/channel names or emails to notify (or set roleToRecipients per role, or routing.crd=true)" }}
{{- end }}
{{- end }}
