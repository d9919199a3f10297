{{/* Chart name, truncated to the 63 characters a DNS label allows. */}}
{{- define "catdog.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified app name: the release name, plus the chart name unless the release already contains it. */}}
{{- define "catdog.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "catdog.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels that select the pods: stable across upgrades (Deployment selectors are immutable). */}}
{{- define "catdog.selectorLabels" -}}
app.kubernetes.io/name: {{ include "catdog.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "catdog.labels" -}}
helm.sh/chart: {{ include "catdog.chart" . }}
{{ include "catdog.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: inference
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "catdog.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "catdog.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Image reference: the GPU variant is the same repository with a tag suffix (e.g. 0.1.0-gpu). */}}
{{- define "catdog.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if .Values.gpu.enabled }}
{{- $tag = default (printf "%s%s" $tag .Values.gpu.image.tagSuffix) .Values.gpu.image.tag }}
{{- end }}
{{- $repo := .Values.image.repository }}
{{- if and .Values.gpu.enabled .Values.gpu.image.repository }}
{{- $repo = .Values.gpu.image.repository }}
{{- end }}
{{- if .Values.image.digest }}
{{- printf "%s:%s@%s" $repo $tag .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" $repo $tag }}
{{- end }}
{{- end }}

{{/* The ingress path prefix without a trailing slash; "" when the service sits at the root. */}}
{{- define "catdog.rootPath" -}}
{{- if .Values.ingress.enabled }}
{{- trimSuffix "/" .Values.ingress.path }}
{{- end }}
{{- end }}

{{/* preStop sleep + drain + margin: the pod's whole grace period unless set explicitly. */}}
{{- define "catdog.terminationGracePeriodSeconds" -}}
{{- $t := .Values.termination }}
{{- $needed := add $t.preStopSleepSeconds (int (ceil .Values.config.drain_timeout_s)) }}
{{- if $t.gracePeriodSeconds }}
{{- if le (int $t.gracePeriodSeconds) (int $needed) }}
{{- fail (printf "termination.gracePeriodSeconds (%v) must exceed termination.preStopSleepSeconds + config.drain_timeout_s (%v), or Kubernetes kills pods mid-drain" $t.gracePeriodSeconds $needed) }}
{{- end }}
{{- $t.gracePeriodSeconds }}
{{- else }}
{{- add $needed $t.marginSeconds }}
{{- end }}
{{- end }}

{{/* Whether to use the native preStop sleep action (Kubernetes >= 1.30) instead of exec-ing /bin/sleep. */}}
{{- define "catdog.useSleepAction" -}}
{{- $mode := toString .Values.termination.preStopSleepAction }}
{{- if eq $mode "auto" }}
{{- semverCompare ">=1.30.0-0" .Capabilities.KubeVersion.Version }}
{{- else }}
{{- eq $mode "true" }}
{{- end }}
{{- end }}

{{/* Upload limit in whole MiB, rounded up, plus 1 MiB for multipart framing: the ingress body-size limit. */}}
{{- define "catdog.ingressBodySize" -}}
{{- if .Values.ingress.maxBodySize }}
{{- .Values.ingress.maxBodySize }}
{{- else }}
{{- $mib := 1048576 }}
{{- $bytes := int64 .Values.config.max_upload_bytes }}
{{- printf "%dm" (add (div (add $bytes (sub $mib 1)) $mib) 1) }}
{{- end }}
{{- end }}

{{/* A setting as an env string: whole numbers without the float64 exponent YAML parsing gives them. */}}
{{- define "catdog.envValue" -}}
{{- if and (kindIs "float64" .) (eq (float64 (int64 .)) .) }}
{{- int64 . }}
{{- else }}
{{- toString . }}
{{- end }}
{{- end }}

{{/* The one autoscaling mode that renders: "hpa" (CPU, optionally a prometheus-adapter metric), "keda" or "none".
Two modes at once, or a KEDA option without KEDA, fail the render with the keys to change. */}}
{{- define "catdog.autoscalingMode" -}}
{{- $a := .Values.autoscaling }}
{{- $k := $a.keda }}
{{- if and $k.scaleToZero.enabled (not $k.enabled) }}
{{- fail "autoscaling.keda.scaleToZero.enabled needs autoscaling.keda.enabled" }}
{{- end }}
{{- if and $k.enabled (not $a.enabled) }}
{{- fail "autoscaling.keda.enabled needs autoscaling.enabled (KEDA is one of the autoscaling modes)" }}
{{- end }}
{{- if and $k.enabled $a.customMetric.enabled }}
{{- fail "autoscaling.customMetric.enabled (HPA through prometheus-adapter) and autoscaling.keda.enabled are two autoscaling modes: enable one of them" }}
{{- end }}
{{- if not $a.enabled }}none{{ else if $k.enabled }}keda{{ else }}hpa{{ end }}
{{- end }}

{{/* KEDA's Prometheus label matchers for this release's series. */}}
{{- define "catdog.kedaSelector" -}}
{{- tpl .Values.autoscaling.keda.prometheus.selector . }}
{{- end }}

{{/* Hosts the KEDA HTTP add-on routes to this release: scaleToZero.hosts, else the enabled ingress's hosts. */}}
{{- define "catdog.scaleToZeroHosts" -}}
{{- $hosts := .Values.autoscaling.keda.scaleToZero.hosts }}
{{- if and (not $hosts) .Values.ingress.enabled }}
{{- $hosts = list }}
{{- range .Values.ingress.hosts }}{{ $hosts = append $hosts .host }}{{ end }}
{{- end }}
{{- toJson $hosts }}
{{- end }}

{{/* The Service the ingress sends traffic to: the add-on's interceptor (through an ExternalName Service) when the
release scales to zero, else the release's own Service. */}}
{{- define "catdog.ingressBackendService" -}}
{{- $z := .Values.autoscaling.keda.scaleToZero }}
{{- if and (eq (include "catdog.autoscalingMode" .) "keda") $z.enabled $z.routeIngress }}
{{- printf "%s-interceptor" (include "catdog.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- include "catdog.fullname" . }}
{{- end }}
{{- end }}

{{/*
The TLS Secret's name: tls.secretName, else <fullname>-tls (what the chart's cert-manager Certificate writes).
*/}}
{{- define "catdog.tlsSecretName" -}}
{{- default (printf "%s-tls" (include "catdog.fullname" .)) .Values.tls.secretName }}
{{- end }}

{{/*
One probe's handler. Plain text: httpGet (or the native gRPC probe with grpc.probes). TLS: httpGet over HTTPS
(the kubelet does not verify the certificate; its gRPC probe has no TLS at all). Mutual TLS: exec `catdog probe`,
which presents the pod's own certificate (the kubelet cannot present one). Arguments: (list $ path grpcService).
*/}}
{{- define "catdog.probeHandler" -}}
{{- $ := index . 0 }}
{{- $path := index . 1 }}
{{- $grpcService := index . 2 }}
{{- if and $.Values.tls.enabled $.Values.tls.clientAuth }}
exec:
  command: ["catdog", "probe", {{ $path | quote }}]
{{- else if and $.Values.grpc.enabled $.Values.grpc.probes }}
grpc:
  port: {{ $.Values.grpc.containerPort }}
  service: {{ $grpcService | quote }}
{{- else }}
httpGet:
  path: {{ $path }}
  port: http
  {{- if $.Values.tls.enabled }}
  scheme: HTTPS
  {{- end }}
{{- end }}
{{- end }}
