// A small JSON client for the local API server (bearer token + cluster CA), used by the cluster's own
// parts where a full client library adds nothing (health checks, node registration, leases).
import { readFileSync } from "node:fs";
import { request } from "node:https";

export class ApiError extends Error {
  override name = "ApiError";
  constructor(readonly status: number, readonly method: string, readonly path: string, readonly body: string) {
    super(`${method} ${path}: HTTP ${status}: ${ApiError.reason(body)}`);
  }
  static reason(body: string): string {
    try {
      return (JSON.parse(body) as { message?: string }).message ?? body;
    } catch {
      return body.slice(0, 300);
    }
  }
}

export interface ApiTarget {
  server: string;
  ca: string;
  token: string;
}

/** Reads server, CA and token from one of our kubeconfigs (see pki.writeKubeconfig). */
export function targetFromKubeconfig(file: string): ApiTarget {
  const cfg = JSON.parse(readFileSync(file, "utf8"));
  return {
    server: cfg.clusters[0].cluster.server,
    ca: Buffer.from(cfg.clusters[0].cluster["certificate-authority-data"], "base64").toString(),
    token: cfg.users[0].user.token,
  };
}

export class Api {
  constructor(readonly target: ApiTarget) {}

  /** Sends one request; resolves with the parsed JSON body, rejects with ApiError on a non-2xx status. */
  request<T = unknown>(method: string, path: string, body?: unknown, contentType = "application/json", timeoutMs = 10_000): Promise<T> {
    const url = new URL(path, this.target.server);
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    return new Promise<T>((resolve, reject) => {
      const req = request(url, {
        method,
        ca: this.target.ca,
        timeout: timeoutMs,
        headers: {
          authorization: `Bearer ${this.target.token}`,
          accept: "application/json",
          ...(payload ? { "content-type": contentType, "content-length": payload.length } : {}),
        },
      }, (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => {
          const text = Buffer.concat(chunks).toString();
          if ((res.statusCode ?? 0) >= 300) return reject(new ApiError(res.statusCode ?? 0, method, path, text));
          try {
            resolve((text ? JSON.parse(text) : undefined) as T);
          } catch {
            resolve(text as T);
          }
        });
        res.on("error", reject);
      });
      req.on("timeout", () => req.destroy(new Error(`${method} ${path}: no answer within ${timeoutMs} ms`)));
      req.on("error", reject);
      req.end(payload);
    });
  }

  get<T = unknown>(path: string): Promise<T> {
    return this.request<T>("GET", path);
  }
  post<T = unknown>(path: string, body: unknown): Promise<T> {
    return this.request<T>("POST", path, body);
  }
  put<T = unknown>(path: string, body: unknown): Promise<T> {
    return this.request<T>("PUT", path, body);
  }
  /** Strategic-merge patch by default; use "application/merge-patch+json" for CRDs. */
  patch<T = unknown>(path: string, body: unknown, type = "application/strategic-merge-patch+json"): Promise<T> {
    return this.request<T>("PATCH", path, body, type);
  }
  delete<T = unknown>(path: string): Promise<T> {
    return this.request<T>("DELETE", path);
  }

  /** Creates an object, or leaves it as it is when it exists already. */
  async ensure(path: string, body: { metadata: { name: string } }): Promise<void> {
    try {
      await this.post(path, body);
    } catch (err) {
      if (!(err instanceof ApiError && err.status === 409)) throw err;
    }
  }
}

/** Thrown by a wait's check to stop waiting at once (e.g. the awaited process died). */
export class FatalWaitError extends Error {
  override name = "FatalWaitError";
}

/** Polls `check` until it returns a value (not undefined/false), or throws after `timeoutMs` with `what`. */
export async function waitFor<T>(what: string, check: () => Promise<T | undefined | false>, timeoutMs: number, intervalMs = 100): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const v = await check();
      if (v !== undefined && v !== false) return v;
    } catch (err) {
      if (err instanceof FatalWaitError) throw err;
      last = err;
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${(last as Error).message}` : ""}`);
}

/** Kubernetes MicroTime: RFC 3339 with exactly six fractional digits. */
export function microTime(d = new Date()): string {
  return d.toISOString().replace(/\.(\d{3})Z$/, ".$1000Z");
}
