{{/* The release's full name, at most 63 characters. */}}
{{- define "colo.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "colo.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "colo.labels" -}}
{{ include "colo.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "colo.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "colo.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "colo.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* colo-cni's settings, appended to the node's chain by the installer. */}}
{{- define "colo.pluginConfig" -}}
{{- dict "failurePolicy" .Values.cni.failurePolicy "timeoutMs" .Values.cni.timeoutMs "enableAll" .Values.cni.enableAll "logLevel" .Values.cni.logLevel | toJson -}}
{{- end -}}

{{/* The installer containers: root for the host's CNI directories, no privilege beyond reading
and writing files of other owners there (DAC_OVERRIDE), keeping their owner (CHOWN) and mode
(FOWNER). */}}
{{- define "colo.installerSecurityContext" -}}
runAsUser: 0
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: [ALL]
  add: [CHOWN, DAC_OVERRIDE, FOWNER]
{{- end -}}

{{/* The port of agent.httpAddress (probes, the metrics Service and the ServiceMonitor use it). */}}
{{- define "colo.httpPort" -}}
{{- regexReplaceAll "^.*:([0-9]+)$" .Values.agent.httpAddress "${1}" -}}
{{- end -}}

{{/* The host the kubelet's probes call: agent.httpAddress's host, or none (the pod's IP, which
on the host network is the node's) when colo-node listens on every address. */}}
{{- define "colo.probeHost" -}}
{{- $host := regexReplaceAll ":[0-9]+$" .Values.agent.httpAddress "" | trimPrefix "[" | trimSuffix "]" -}}
{{- if not (has $host (list "0.0.0.0" "::" "")) -}}
{{- $host -}}
{{- end -}}
{{- end -}}

{{/* An httpGet probe of colo-node at PATH. */}}
{{- define "colo.probe" -}}
httpGet:
  {{- with include "colo.probeHost" .ctx }}
  host: {{ . | quote }}
  {{- end }}
  path: {{ .path }}
  port: {{ include "colo.httpPort" .ctx }}
{{- end -}}
