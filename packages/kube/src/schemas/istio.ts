// security.istio.io/v1 AuthorizationPolicy and PeerAuthentication.
//
// Validation is structural only: shapes and enums. Whether a principal, an IP block or a port string means anything
// is the translator's call (it must fail closed), and unknown fields are kept so that it can see them.

import { z } from "zod";
import { NamespacedMeta, StringMap, opt, optList } from "./common.js";

const typeMeta = {
  apiVersion: opt(z.string()),
  kind: opt(z.string()),
};

const strings = optList(z.string());

/** Istio's WorkloadSelector. */
export const WorkloadSelector = z.looseObject({ matchLabels: opt(StringMap) });

/** Istio's PolicyTargetReference (Gateway API style). */
export const PolicyTargetReference = z.looseObject({
  group: opt(z.string()),
  kind: z.string(),
  name: z.string(),
  namespace: opt(z.string()),
});

export const Source = z.looseObject({
  principals: strings,
  notPrincipals: strings,
  requestPrincipals: strings,
  notRequestPrincipals: strings,
  namespaces: strings,
  notNamespaces: strings,
  serviceAccounts: strings,
  notServiceAccounts: strings,
  ipBlocks: strings,
  notIpBlocks: strings,
  remoteIpBlocks: strings,
  notRemoteIpBlocks: strings,
});

export const Operation = z.looseObject({
  hosts: strings,
  notHosts: strings,
  /** Strings in the API (e.g. "8080"); the translator decides what a valid one is. */
  ports: strings,
  notPorts: strings,
  methods: strings,
  notMethods: strings,
  paths: strings,
  notPaths: strings,
});

export const RuleCondition = z.looseObject({
  key: z.string(),
  values: strings,
  notValues: strings,
});

export const AuthorizationRule = z.looseObject({
  from: optList(z.looseObject({ source: opt(Source) })),
  to: optList(z.looseObject({ operation: opt(Operation) })),
  when: optList(RuleCondition),
});

export const AuthorizationAction = z.enum(["ALLOW", "DENY", "AUDIT", "CUSTOM"]);

export const AuthorizationPolicySchema = z.looseObject({
  ...typeMeta,
  metadata: NamespacedMeta,
  /** An absent spec is an empty policy (for ALLOW: matches nothing). */
  spec: opt(
    z.looseObject({
      selector: opt(WorkloadSelector),
      targetRef: opt(PolicyTargetReference),
      targetRefs: optList(PolicyTargetReference),
      action: opt(AuthorizationAction),
      provider: opt(z.looseObject({ name: opt(z.string()) })),
      rules: optList(AuthorizationRule),
    }),
  ),
});

export const MtlsMode = z.enum(["UNSET", "DISABLE", "PERMISSIVE", "STRICT"]);

export const PeerAuthenticationSchema = z.looseObject({
  ...typeMeta,
  metadata: NamespacedMeta,
  spec: opt(
    z.looseObject({
      selector: opt(WorkloadSelector),
      mtls: opt(z.looseObject({ mode: opt(MtlsMode) })),
      /** Keys are port numbers (as JSON object keys, i.e. strings). */
      portLevelMtls: opt(
        z.record(z.string().regex(/^[0-9]+$/, "expected a port number"), z.looseObject({ mode: opt(MtlsMode) })),
      ),
    }),
  ),
});

export type WorkloadSelector = z.infer<typeof WorkloadSelector>;
export type PolicyTargetReference = z.infer<typeof PolicyTargetReference>;
export type Source = z.infer<typeof Source>;
export type Operation = z.infer<typeof Operation>;
export type RuleCondition = z.infer<typeof RuleCondition>;
export type AuthorizationRule = z.infer<typeof AuthorizationRule>;
export type AuthorizationAction = z.infer<typeof AuthorizationAction>;
export type AuthorizationPolicy = z.infer<typeof AuthorizationPolicySchema>;
export type MtlsMode = z.infer<typeof MtlsMode>;
export type PeerAuthentication = z.infer<typeof PeerAuthenticationSchema>;
