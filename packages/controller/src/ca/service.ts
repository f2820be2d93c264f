// istio.v1.auth.IstioCertificateService/CreateCertificate, on the controller's TLS gRPC port (15012) beside xDS.
// The certificate's identity comes from the authenticated caller (TokenReview), or from the request metadata
// "ImpersonatedIdentity" when the node authorizer allows it — never from the CSR, whose public key alone is used.
// The caller is authenticated from the request's metadata before its message is read (certificateAuthInterceptor):
// an unauthenticated client cannot make the server buffer anything.
import * as grpc from "@grpc/grpc-js";
import { CREATE_CERTIFICATE_PATH, IMPERSONATED_IDENTITY_KEY, istio } from "@ambit/protocol";
import { CsrError, parseCsr, type CertificateAuthority } from "@ambit/pki";
import { AuthenticationUnavailable, type Caller } from "../auth.js";
import { ImpersonationDenied, type NodeAuthorizer } from "./node-authorizer.js";

const Req = istio.v1.auth.IstioCertificateRequest;
const Res = istio.v1.auth.IstioCertificateResponse;


export const certificateServiceDefinition: grpc.ServiceDefinition = {
  CreateCertificate: {
    path: CREATE_CERTIFICATE_PATH,
    requestStream: false,
    responseStream: false,
    requestSerialize: (m: istio.v1.auth.IstioCertificateRequest) => Buffer.from(Req.encode(m).finish()),
    requestDeserialize: (b: Buffer) => Req.decode(b),
    responseSerialize: (m: istio.v1.auth.IstioCertificateResponse.$Properties) => Buffer.from(Res.encode(m).finish()),
    responseDeserialize: (b: Buffer) => Res.decode(b),
  },
};

export interface CaServiceOptions {
  ca: () => CertificateAuthority;
  authenticate: (authorization: string | undefined) => Promise<Caller>;
  nodeAuthorizer: NodeAuthorizer;
  defaultTtlSeconds: number;
  maxTtlSeconds: number;
  onIssued?: (identity: string, ok: boolean, reason?: string) => void;
}

class CaFailure extends Error {
  constructor(readonly code: grpc.status, message: string) {
    super(message);
  }
}

/** Callers authenticated by the interceptor, by the call's metadata object (which the handler receives). */
const authenticated = new WeakMap<grpc.Metadata, Caller>();

async function authenticateCaller(o: CaServiceOptions, md: grpc.Metadata): Promise<Caller> {
  const known = authenticated.get(md);
  if (known) return known;
  try {
    return await o.authenticate(md.get("authorization")[0]?.toString());
  } catch (err) {
    const code = err instanceof AuthenticationUnavailable ? grpc.status.UNAVAILABLE : grpc.status.UNAUTHENTICATED;
    throw new CaFailure(code, `request authenticate failure: ${(err as Error).message}`);
  }
}

/**
 * A grpc-js server interceptor (after `endRequestWithResponse`, see @ambit/xds `grpcServerOptions`) that
 * authenticates CreateCertificate calls from their metadata, before grpc-js reads the request message: a caller
 * without a valid token gets UNAUTHENTICATED and its message is never read.
 */
export function certificateAuthInterceptor(o: CaServiceOptions): grpc.ServerInterceptor {
  return (method, call) => {
    if (method.path !== CREATE_CERTIFICATE_PATH) return new grpc.ServerInterceptingCall(call);
    return new grpc.ServerInterceptingCall(call, {
      start: (next) => next({
        onReceiveMetadata: (metadata, proceed) => {
          authenticateCaller(o, metadata).then(
            (caller) => {
              authenticated.set(metadata, caller);
              proceed(metadata);
            },
            (err: Error) => {
              o.onIssued?.("", false, err.message);
              call.sendStatus({ code: err instanceof CaFailure ? err.code : grpc.status.INTERNAL, details: err.message, metadata: new grpc.Metadata() });
            },
          );
        },
      }),
    });
  };
}

export async function createCertificate(o: CaServiceOptions, req: istio.v1.auth.IstioCertificateRequest, md: grpc.Metadata): Promise<string[]> {
  const caller = await authenticateCaller(o, md);
  let csr;
  try {
    csr = await parseCsr(req.csr ?? "");
  } catch (err) {
    if (err instanceof CsrError) throw new CaFailure(grpc.status.INVALID_ARGUMENT, `invalid CSR: ${err.message}`);
    throw err;
  }
  const impersonated = req.metadata?.fields?.[IMPERSONATED_IDENTITY_KEY]?.string_value ?? "";
  let identity = caller.identity;
  if (impersonated) {
    try {
      identity = o.nodeAuthorizer.authorize(caller, impersonated);
    } catch (err) {
      if (err instanceof ImpersonationDenied) throw new CaFailure(grpc.status.PERMISSION_DENIED, `impersonation of ${impersonated} denied: ${err.message}`);
      throw err;
    }
  }
  const requested = Number(req.validity_duration ?? 0);
  const ttlSeconds = requested > 0 ? Math.min(requested, o.maxTtlSeconds) : o.defaultTtlSeconds;
  const ca = o.ca();
  const leaf = await ca.sign({ publicKey: csr.publicKey, uriSans: [identity], ttlSeconds });
  o.onIssued?.(identity, true);
  return ca.chainFor(leaf);
}

/** Registers the service on a gRPC server. Failures become gRPC statuses; nothing throws out of a call. */
export function registerCertificateService(server: grpc.Server, o: CaServiceOptions): void {
  server.addService(certificateServiceDefinition, {
    CreateCertificate: (call: grpc.ServerUnaryCall<istio.v1.auth.IstioCertificateRequest, unknown>, cb: grpc.sendUnaryData<istio.v1.auth.IstioCertificateResponse.$Properties>) => {
      createCertificate(o, call.request, call.metadata).then(
        (chain) => cb(null, { cert_chain: chain }),
        (err: Error) => {
          const code = err instanceof CaFailure ? err.code : grpc.status.INTERNAL;
          o.onIssued?.("", false, err.message);
          cb({ code, details: err instanceof CaFailure ? err.message : `internal error: ${err.message}` });
        },
      );
    },
  });
}
