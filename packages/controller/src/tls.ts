// The DNS names of the controller's serving certificate: those of its Service, as istiod's certificate carries them.
export function istiodDnsNames(namespace: string, domainSuffix: string): string[] {
  return ["istiod", "istiod-remote", "istio-pilot"].flatMap((n) => [`${n}.${namespace}.svc`, `${n}.${namespace}.svc.${domainSuffix}`]);
}
