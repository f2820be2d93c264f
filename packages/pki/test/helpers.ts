// Test helpers: a scratch directory and the openssl command line, used as an independent implementation.
import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export const OPENSSL = "/usr/bin/openssl";

export class Scratch {
  readonly dir = mkdtempSync(join(tmpdir(), "ambit-pki-"));
  path(name: string): string {
    return join(this.dir, name);
  }
  write(name: string, content: string | Uint8Array): string {
    const p = this.path(name);
    writeFileSync(p, content);
    return p;
  }
  read(name: string): string {
    return readFileSync(this.path(name), "utf8");
  }
  cleanup(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Runs openssl in `cwd`; returns stdout, throws with stderr on failure. */
export function openssl(cwd: string, args: string[]): string {
  return execFileSync(OPENSSL, args, { cwd, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
}

/** Runs openssl and returns the exit status and combined output, never throwing. */
export function opensslTry(cwd: string, args: string[]): { ok: boolean; out: string } {
  const r = spawnSync(OPENSSL, args, { cwd, encoding: "utf8" });
  return { ok: r.status === 0, out: `${r.stdout}${r.stderr}` };
}

/** An openssl config with the extension profiles the tests need. */
export const OPENSSL_CNF = `
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[v3_root]
basicConstraints = critical, CA:true
keyUsage = critical, keyCertSign, cRLSign, digitalSignature
subjectKeyIdentifier = hash
[v3_int]
basicConstraints = critical, CA:true
keyUsage = critical, keyCertSign, cRLSign, digitalSignature
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[v3_int_pathlen0]
basicConstraints = critical, CA:true, pathlen:0
keyUsage = critical, keyCertSign, cRLSign, digitalSignature
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[v3_int_no_certsign]
basicConstraints = critical, CA:true
keyUsage = critical, digitalSignature
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[v3_int_name_constraints]
basicConstraints = critical, CA:true
keyUsage = critical, keyCertSign, cRLSign
nameConstraints = critical, permitted;DNS:example.com
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[v3_not_ca]
basicConstraints = critical, CA:false
keyUsage = critical, digitalSignature, keyEncipherment
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[v3_leaf]
basicConstraints = critical, CA:false
keyUsage = critical, digitalSignature
subjectAltName = critical, URI:spiffe://cluster.local/ns/test/sa/openssl, URI:https://example.com/x, DNS:openssl.example.com
authorityKeyIdentifier = keyid:always
`;

let serial = 0x1000;

/** A small openssl-driven CA factory working in one scratch directory. */
export class OpensslPki {
  constructor(readonly s: Scratch) {
    s.write("openssl.cnf", OPENSSL_CNF);
  }

  /** A key file: "rsa:<bits>" (PKCS#1 when traditional), "ec" (SEC1 with an EC PARAMETERS block) or "ec-pkcs8". */
  key(name: string, kind: string): string {
    const out = this.s.path(name);
    if (kind.startsWith("rsa:")) openssl(this.s.dir, ["genrsa", "-traditional", "-out", out, kind.slice(4)]);
    else if (kind === "rsa-pkcs8:2048") openssl(this.s.dir, ["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", out]);
    else if (kind === "ec") openssl(this.s.dir, ["ecparam", "-name", "prime256v1", "-genkey", "-out", out]);
    else if (kind === "ec-pkcs8") openssl(this.s.dir, ["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", out]);
    else throw new Error(`unknown key kind ${kind}`);
    return this.s.read(name);
  }

  /** A self-signed root with the v3_root profile. */
  root(name: string, keyName: string, subject: string, days = 3650): string {
    openssl(this.s.dir, ["req", "-x509", "-new", "-key", keyName, "-subj", subject, "-days", String(days), "-sha256", "-config", "openssl.cnf", "-extensions", "v3_root", "-out", name]);
    return this.s.read(name);
  }

  /** A certificate for `keyName` signed by `caName`/`caKeyName` with the given extension profile. */
  issue(name: string, keyName: string, subject: string, caName: string, caKeyName: string, profile: string, days = 730): string {
    const csr = `${name}.csr`;
    openssl(this.s.dir, ["req", "-new", "-key", keyName, "-subj", subject, "-config", "openssl.cnf", "-out", csr]);
    openssl(this.s.dir, [
      "x509", "-req", "-in", csr, "-CA", caName, "-CAkey", caKeyName, "-set_serial", String(serial++), "-days", String(days),
      "-sha256", "-extfile", "openssl.cnf", "-extensions", profile, "-out", name,
    ]);
    return this.s.read(name);
  }
}
