// Error types. Each names what was wrong so that callers can map it to a status code without parsing text.

/** Base class of every error this package throws on purpose. */
export class PkiError extends Error {
  override name = "PkiError";
}

/** A PEM text could not be decoded (no block, wrong label, bad base64, BEGIN/END mismatch). */
export class PemError extends PkiError {
  override name = "PemError";
}

/**
 * A certificate signing request was rejected: malformed PEM/DER, a signature that does not verify, or an
 * unsupported key. The CA server maps it to gRPC INVALID_ARGUMENT.
 */
export class CsrError extends PkiError {
  override name = "CsrError";
}

/** A private key could not be imported or is of a type this package cannot sign with. */
export class KeyError extends PkiError {
  override name = "KeyError";
}

/** The CA is misconfigured or cannot issue the requested certificate (bad SANs, TTL, expired CA). */
export class CaError extends PkiError {
  override name = "CaError";
}

/** A certificate chain did not verify; `reason` is the first problem found on the best candidate path. */
export class ChainVerificationError extends PkiError {
  override name = "ChainVerificationError";
}

/** A plug-in CA bundle is unusable; `file` names the file (for example `ca-key.pem`) that holds the problem. */
export class PluggedCaError extends PkiError {
  override name = "PluggedCaError";
  constructor(
    readonly file: string,
    readonly problem: string,
  ) {
    super(`${file}: ${problem}`);
  }
}
