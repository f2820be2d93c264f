// gateway.networking.k8s.io/v1 Gateway (waypoints are Gateways of class istio-waypoint).

import { z } from "zod";
import { Condition, NamespacedMeta, Port, opt, optList } from "./common.js";

const typeMeta = {
  apiVersion: opt(z.string()),
  kind: opt(z.string()),
};

export const Listener = z.looseObject({
  name: z.string(),
  hostname: opt(z.string()),
  port: Port,
  protocol: z.string(),
  tls: opt(z.looseObject({})),
  allowedRoutes: opt(z.looseObject({})),
});

export const GatewayAddress = z.looseObject({
  type: opt(z.string()),
  value: z.string(),
});

export const GatewaySchema = z.looseObject({
  ...typeMeta,
  metadata: NamespacedMeta,
  spec: z.looseObject({
    gatewayClassName: z.string().min(1),
    listeners: z.array(Listener),
    addresses: optList(z.looseObject({ type: opt(z.string()), value: opt(z.string()) })),
    infrastructure: opt(z.looseObject({})),
  }),
  status: opt(
    z.looseObject({
      addresses: optList(GatewayAddress),
      conditions: optList(Condition),
      listeners: optList(z.looseObject({ name: z.string() })),
    }),
  ),
});

export type Listener = z.infer<typeof Listener>;
export type GatewayAddress = z.infer<typeof GatewayAddress>;
export type Gateway = z.infer<typeof GatewaySchema>;
