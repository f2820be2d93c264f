// ztunnel's identity layer: the CA client (IstioCertificateService) and the per-identity certificate manager.
export { CaClient, CaError, parseCaAddress, type CaClientOptions, type WorkloadCertificate } from "./ca-client.js";
export {
  CertificateManager,
  CertificateUnavailableError,
  type CertificateManagerOptions,
  type CertificateSource,
  type CertificateDump,
  type CertificateDumpEntry,
  type IdentityLogger,
} from "./manager.js";
