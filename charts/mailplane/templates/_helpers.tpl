{{/* Names and labels. */}}
{{- define "mailplane.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "mailplane.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Selector labels of one component: include "mailplane.selector" (list . "api") */}}
{{- define "mailplane.selector" -}}
app.kubernetes.io/name: {{ (index . 0).Chart.Name }}
app.kubernetes.io/instance: {{ (index . 0).Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{- define "mailplane.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "mailplane.databaseSecret" -}}
{{- if .Values.database.existingSecret -}}{{ .Values.database.existingSecret }}{{- else -}}{{ include "mailplane.fullname" . }}-database{{- end -}}
{{- end -}}

{{- define "mailplane.secretKeySecret" -}}
{{- if .Values.secretKey.existingSecret -}}{{ .Values.secretKey.existingSecret }}{{- else -}}{{ include "mailplane.fullname" . }}-secret-key{{- end -}}
{{- end -}}

{{/* Pod Security Standard "restricted", for every pod of the chart. */}}
{{- define "mailplane.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "mailplane.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: [ALL]
{{- end -}}

{{/* The environment every Mailplane process shares. */}}
{{- /*
The DNS servers every component that resolves asks (MAILPLANE_DNS_SERVERS): dnsServers, or the
operator.dnsServers of earlier releases.
*/ -}}
{{- define "mailplane.dnsServers" -}}
{{- .Values.dnsServers | default .Values.operator.dnsServers -}}
{{- end -}}

{{- /*
The public base URL of /u/ and /t/ (MAILPLANE_PUBLIC_URL): publicUrl, or with the Ingress on,
https:// and its first host. Always https: one-click unsubscribe (RFC 8058) needs an https link, and
recipients' mail clients reach the host over https whether TLS ends at the Ingress (with
ingress.tls.secretName) or at a load balancer in front of it. Empty: none, and NOTES.txt says so.
*/ -}}
{{- define "mailplane.publicUrl" -}}
{{- if .Values.publicUrl -}}
{{- .Values.publicUrl -}}
{{- else if and .Values.ingress.enabled .Values.ingress.hosts -}}
https://{{ first .Values.ingress.hosts }}
{{- end -}}
{{- end -}}

{{- define "mailplane.env" -}}
- name: DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "mailplane.databaseSecret" . }}
      key: {{ if .Values.database.existingSecret }}{{ .Values.database.existingSecretKey }}{{ else }}DATABASE_URL{{ end }}
- name: MAILPLANE_SECRET_KEY
  valueFrom:
    secretKeyRef:
      name: {{ include "mailplane.secretKeySecret" . }}
      key: MAILPLANE_SECRET_KEY
- name: LOG_LEVEL
  value: {{ .Values.logLevel | quote }}
{{- if .Values.inboundHost }}
- name: MAILPLANE_INBOUND_HOST
  value: {{ .Values.inboundHost | quote }}
{{- end }}
{{- with .Values.spf.include }}
- name: MAILPLANE_SPF_INCLUDE
  value: {{ join "," . | quote }}
{{- end }}
{{- with .Values.spf.egressIPs }}
- name: MAILPLANE_EGRESS_IPS
  value: {{ join "," . | quote }}
{{- end }}
{{- with .Values.dmarc.rua }}
- name: MAILPLANE_DMARC_RUA
  value: {{ join "," . | quote }}
{{- end }}
{{- with include "mailplane.publicUrl" . }}
- name: MAILPLANE_PUBLIC_URL
  value: {{ . | quote }}
{{- end }}
{{- if .Values.webhooks.allowPrivate }}
- name: MAILPLANE_WEBHOOKS_ALLOW_PRIVATE
  value: 'true'
{{- end }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* A writable /tmp on a read-only root filesystem. */}}
{{- define "mailplane.tmpVolumeMount" -}}
- name: tmp
  mountPath: /tmp
{{- end -}}
{{- define "mailplane.tmpVolume" -}}
- name: tmp
  emptyDir:
    sizeLimit: 64Mi
{{- end -}}

{{/* Scheduling of one component: include "mailplane.scheduling" .Values.api */}}
{{- define "mailplane.scheduling" -}}
{{- with .nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}
