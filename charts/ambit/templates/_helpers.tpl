{{/*
Shared helpers of the Ambit chart. Object names are fixed (istiod, ztunnel, istio-cni-node, …) because Istio's
tools, ztunnel's defaults and the CNI agent look them up by name; the labels below identify the release.
*/}}

{{/* "ambit-0.1.0", the helm.sh/chart label value. */}}
{{- define "ambit.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Standard labels of every object. Call with (dict "ctx" $ "component" "<name>").
*/}}
{{- define "ambit.labels" -}}
helm.sh/chart: {{ include "ambit.chart" .ctx }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
{{ include "ambit.podLabels" . }}
{{- end -}}

{{/*
Labels of pod templates: the standard set without helm.sh/chart and managed-by, so that a chart upgrade that
changes nothing in a component does not roll its pods. Call with (dict "ctx" $ "component" "<name>").
*/}}
{{- define "ambit.podLabels" -}}
app.kubernetes.io/name: ambit
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
app.kubernetes.io/part-of: ambit
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
{{- end -}}

{{/*
Image of a component: "<repository>/<component>:<tag>", or "ambit/<component>:<tag>" when image.repository is
empty (the local cluster maps ambit/<component> to the programs of this repository). The tag defaults to the
chart's appVersion. Call with (dict "ctx" $ "component" "ztunnel").
*/}}
{{- define "ambit.image" -}}
{{- $repo := .ctx.Values.image.repository | default "ambit" | trimSuffix "/" -}}
{{- $tag := .ctx.Values.image.tag | default .ctx.Chart.AppVersion -}}
{{- printf "%s/%s:%s" $repo .component $tag -}}
{{- end -}}

{{/* The imagePullSecrets list of a pod spec (call only when image.pullSecrets is not empty). */}}
{{- define "ambit.imagePullSecrets" -}}
{{- $out := list -}}
{{- range .Values.image.pullSecrets }}{{ $out = append $out (dict "name" .) }}{{ end -}}
imagePullSecrets:
{{ toYaml $out }}
{{- end -}}

{{/* "istiod.<release namespace>.svc:15012", where ztunnel reaches the CA and xDS over TLS. */}}
{{- define "ambit.istiodTlsAddress" -}}
{{- printf "istiod.%s.svc:15012" .Release.Namespace -}}
{{- end -}}

{{/* Env entries from a NAME: value map (values as strings; names sorted). Call only when the map is not empty. */}}
{{- define "ambit.extraEnv" -}}
{{- $out := list -}}
{{- range $name, $value := . }}{{ $out = append $out (dict "name" $name "value" (toString $value)) }}{{ end -}}
{{- toYaml $out -}}
{{- end -}}

{{/* Container resources, or {} when none are set. */}}
{{- define "ambit.resources" -}}
{{- $r := dict -}}
{{- with .requests }}{{ $_ := set $r "requests" . }}{{ end -}}
{{- with .limits }}{{ $_ := set $r "limits" . }}{{ end -}}
{{- if $r }}
{{- toYaml $r }}
{{- else -}}
{}
{{- end -}}
{{- end -}}
