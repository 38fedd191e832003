{{/* What is particular to Discord; every other template is the same in the three charts. */}}

{{- define "plugin.chat" -}}
discord
{{- end }}

{{/* Where the token is mounted, as the official chart mounts it. */}}
{{- define "plugin.tokenFile" -}}
/var/lib/teleport/plugins/discord/discord-token
{{- end }}

{{- define "plugin.chatConfig" -}}
[discord]
token = {{ include "plugin.tokenFile" . | toJson }}
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

[role_to_recipients]
{{- include "plugin.roleToRecipientsLines" . }}
{{- end }}

{{- define "plugin.validateChat" -}}
{{- if and (not .Values.routing.crd) (not (get .Values.roleToRecipients "*")) }}
{{- fail "roleToRecipients must map \"*\" to the default recipients (a Discord channel ID, or a list), for roles without their own entry; it is optional only with routing.crd=true" }}
{{- end }}
{{- end }}
