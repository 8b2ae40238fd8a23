/**
 * Client mode: each party acting against a Safehouse server (`--server URL --as PARTY --key FILE`), with its keys on
 * its own side. What a party signs (upload manifests, approvals, score/verify/train requests, consents, labels) is
 * built by the same functions embedded mode uses, and what comes back sealed (scores, claim answers) is opened here,
 * with the party's own X25519 key. One module per party, over one signed HTTP client (http.ts).
 */
export { Client, clientFor, newJobId, registerParties, type JobView, type ServerInfo } from './http.ts';
export { ProviderClient } from './provider.ts';
export { registerModel, score, evaluate, verify, train } from './bank.ts';
export { grantConsents, revokeConsents, enterpriseKeys, accessReport } from './enterprise.ts';
export { auditVerify, jobsOf, replayRemote } from './auditor.ts';
