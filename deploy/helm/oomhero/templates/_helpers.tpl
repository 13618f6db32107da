{{/* Names and labels. */}}
{{- define "oomhero.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 55 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 55 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "oomhero.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: oomhero
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "oomhero.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: node-agent
{{- end -}}

{{- define "oomhero.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag }}
{{- end -}}

{{/* The source: the value, else the mode's default. */}}
{{- define "oomhero.source" -}}
{{- if .Values.source -}}{{ .Values.source }}{{- else if eq .Values.mode "node" -}}auto{{- else -}}cgroupfs{{- end -}}
{{- end -}}

{{/*
The capabilities added after drop ALL (README, "Sidecar or node agent"):
SYS_PTRACE reads other processes' environ, maps and exe (mm_access), and in a
sidecar their cgroup through /proc/<pid>/root; KILL signals another UID;
DAC_READ_SEARCH (node) opens /proc/<pid>/environ, mode 0400 of the process's
UID; BPF and PERFMON load the tracing program (not with source cgroupfs).
*/}}
{{- define "oomhero.capabilities" -}}
{{- $caps := list "SYS_PTRACE" -}}
{{- if eq .Values.mode "node" -}}{{- $caps = append $caps "DAC_READ_SEARCH" -}}{{- end -}}
{{- $caps = append $caps "KILL" -}}
{{- if ne (include "oomhero.source" .) "cgroupfs" -}}{{- $caps = concat $caps (list "BPF" "PERFMON") -}}{{- end -}}
{{- $caps = concat $caps .Values.extraCapabilities | uniq -}}
{{- toJson $caps -}}
{{- end -}}

{{/* Checks the schema cannot express. */}}
{{- define "oomhero.validate" -}}
{{- if gt (int .Values.thresholds.warning) (int .Values.thresholds.critical) -}}
{{- fail (printf "thresholds.warning (%v) is above thresholds.critical (%v): the warning threshold must be at most the critical one" .Values.thresholds.warning .Values.thresholds.critical) -}}
{{- end -}}
{{- if and .Values.serviceMonitor.enabled (ne .Values.mode "node") -}}
{{- fail "serviceMonitor.enabled is for mode node: sidecars are scraped through their pod's prometheus.io annotations (or a PodMonitor of yours)" -}}
{{- end -}}
{{- end -}}

{{/* The flags common to both modes (after `node` in node mode). */}}
{{- define "oomhero.args" -}}
- --listen=:{{ .Values.metricsPort }}
- --health-socket=/run/oomhero/health.sock
- --source={{ include "oomhero.source" . }}
- --warning={{ .Values.thresholds.warning }}
- --critical={{ .Values.thresholds.critical }}
- --warning-signal={{ .Values.signals.warning }}
- --critical-signal={{ .Values.signals.critical }}
- --cooldown={{ .Values.cooldown }}
{{- if .Values.optIn }}
- --opt-in={{ .Values.optIn }}
{{- end }}
{{- range .Values.extraArgs }}
- {{ . | quote }}
{{- end }}
{{- end -}}

{{- define "oomhero.probes" -}}
livenessProbe:
  periodSeconds: 10
  timeoutSeconds: 3
  failureThreshold: 2
  exec:
    command: ["/oomhero", "probe", "/run/oomhero/health.sock", "/healthz"]
readinessProbe:
  periodSeconds: 5
  timeoutSeconds: 3
  exec:
    command: ["/oomhero", "probe", "/run/oomhero/health.sock", "/readyz"]
{{- end -}}

{{- define "oomhero.securityContext" -}}
readOnlyRootFilesystem: true
allowPrivilegeEscalation: false
capabilities:
  drop: ["ALL"]
  add: {{ include "oomhero.capabilities" . }}
{{- end -}}

{{/* The sidecar container, as a user merges it into a pod. */}}
{{- define "oomhero.sidecarContainer" -}}
name: oomhero
image: {{ include "oomhero.image" . }}
imagePullPolicy: {{ .Values.image.pullPolicy }}
args:
{{ include "oomhero.args" . | indent 2 }}
env:
  - name: POD_NAME
    valueFrom:
      fieldRef:
        fieldPath: metadata.name
  - name: POD_NAMESPACE
    valueFrom:
      fieldRef:
        fieldPath: metadata.namespace
  - name: POD_UID
    valueFrom:
      fieldRef:
        fieldPath: metadata.uid
  - name: NODE_NAME
    valueFrom:
      fieldRef:
        fieldPath: spec.nodeName
ports:
  - name: metrics
    containerPort: {{ .Values.metricsPort }}
{{ include "oomhero.probes" . }}
volumeMounts:
  - name: oomhero-run
    mountPath: /run/oomhero
  - name: oomhero-token
    mountPath: /var/run/secrets/kubernetes.io/serviceaccount
    readOnly: true
resources:
{{ toYaml .Values.resources | indent 2 }}
securityContext:
{{ include "oomhero.securityContext" . | indent 2 }}
{{- end -}}

{{/* The pod-level fields and volumes the sidecar needs. */}}
{{- define "oomhero.sidecarPodSpec" -}}
shareProcessNamespace: true
serviceAccountName: {{ include "oomhero.fullname" . }}-sidecar
automountServiceAccountToken: false
securityContext:
  seccompProfile:
    type: RuntimeDefault
volumes:
  - name: oomhero-token
    projected:
      sources:
        - serviceAccountToken:
            path: token
            expirationSeconds: 3607
        - configMap:
            name: kube-root-ca.crt
            items:
              - key: ca.crt
                path: ca.crt
        - downwardAPI:
            items:
              - path: namespace
                fieldRef:
                  fieldPath: metadata.namespace
  - name: oomhero-run
    emptyDir:
      medium: Memory
      sizeLimit: 1Mi
{{- end -}}
