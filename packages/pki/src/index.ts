// @ambit/pki — keys, CSRs, issuing and verifying certificates with SPIFFE SANs, for the controller's CA and
// ztunnel's certificate manager. Pure: no I/O besides the CPU.
export { generateKeyPair, exportPrivateKeyPem, importPrivateKeyPem, Signer, MIN_RSA_BITS, EC_P256 } from "./keys.js";
export { PublicKeyInfo, MAX_RSA_BITS } from "./publickey.js";
export { createCsr, parseCsr, MAX_CSR_BYTES, type CreateCsrOptions, type ParsedCsr } from "./csr.js";
export {
  CertificateAuthority,
  type CertificateAuthorityOptions,
  type SignRequest,
  type SelfSignedRootOptions,
  type ServingCertificate,
} from "./ca.js";
export { verifyChain, spiffeIdsOf, isCaCertificate, type VerifiedChain } from "./verify.js";
export { loadPluggedCa, type PluggedCaFiles, type PluggedCaTlsFiles } from "./plugged.js";
export { parseCertificate, describeCertificate, type CertificateInfo, type RawExtension } from "./certificate.js";
export { KeyUsage, type GeneralNames } from "./extensions.js";
export { parsePemBundle, derToPem } from "./pem.js";
export { PkiError, PemError, CsrError, KeyError, CaError, ChainVerificationError, PluggedCaError } from "./errors.js";
