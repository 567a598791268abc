{{/* SMTP submission: what its Deployment in workloads.yaml adds to the shared pod template. */}}

{{/* The Secret holding tls.crt and tls.key: the one named, or the one the Certificate writes. */}}
{{- define "mailplane.submissionTlsSecret" -}}
{{- if .Values.submission.tls.existingSecret -}}{{ .Values.submission.tls.existingSecret }}{{- else -}}{{ include "mailplane.fullname" . }}-submission-tls{{- end -}}
{{- end -}}

{{- define "mailplane.submissionEnv" -}}
- name: MAILPLANE_SUBMISSION_PORT
  value: {{ .Values.submission.containerPort | quote }}
- name: MAILPLANE_SUBMISSIONS_PORT
  value: {{ .Values.submission.secureContainerPort | quote }}
- name: MAILPLANE_TLS_CERT_FILE
  value: /etc/mailplane/tls/tls.crt
- name: MAILPLANE_TLS_KEY_FILE
  value: /etc/mailplane/tls/tls.key
{{- end -}}

{{- define "mailplane.submissionPorts" -}}
- { name: submission, containerPort: {{ .Values.submission.containerPort }} }
- { name: submissions, containerPort: {{ .Values.submission.secureContainerPort }} }
{{- end -}}

{{/* The whole Secret as a directory, not by subPath: kubelet updates it in place on renewal. */}}
{{- define "mailplane.submissionTlsVolumeMount" -}}
- name: submission-tls
  mountPath: /etc/mailplane/tls
  readOnly: true
{{- end -}}

{{- define "mailplane.submissionTlsVolume" -}}
- name: submission-tls
  secret:
    secretName: {{ include "mailplane.submissionTlsSecret" . }}
    # Readable by the pod's group (fsGroup) only: the key is the listener's identity.
    defaultMode: 0440
{{- end -}}
