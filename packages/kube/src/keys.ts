// Keys of Kubernetes objects, the same everywhere in Ambit: "<namespace>/<name>", or "<name>" when cluster-scoped.

export interface NamedObject {
  metadata?: { name?: string | undefined; namespace?: string | undefined } | undefined;
}

/** "<namespace>/<name>" for namespaced objects, "<name>" for cluster-scoped ones. Throws when there is no name. */
export function kubeKey(obj: NamedObject): string {
  const name = obj.metadata?.name;
  if (typeof name !== "string" || name === "") throw new Error("object has no metadata.name");
  const ns = obj.metadata?.namespace;
  return ns ? `${ns}/${name}` : name;
}

/** The inverse of {@link kubeKey}. */
export function splitKubeKey(key: string): { namespace?: string; name: string } {
  const i = key.indexOf("/");
  return i < 0 ? { name: key } : { namespace: key.slice(0, i), name: key.slice(i + 1) };
}
