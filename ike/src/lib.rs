//! Sans-IO IKEv2 (RFC 7296), in the style of `proto` for WireGuard: bytes and time in; bytes,
//! events and deadlines out; no sockets and no clock. The daemon runs the responder, the
//! loadtest and the tests the initiator, over the same rules.
//!
//! - `header`: the fixed 28-byte IKE header.
//! - `payloads`: the generic payload chain, read with every length checked, and written.
//! - `message`: a whole message: header and payload chain, both ways.
//! - `proposals`: the SA payload's proposals and transforms.
//! - `suite`: the algorithms spoken here and the choice among an initiator's proposals.
//! - `prf`: the negotiated pseudo-random function and `prf+`.
//! - `dh`: ephemeral Diffie-Hellman keys and the KE payload; `modp`: the 2048-bit MODP group.
//! - `eap`: EAP packets and EAP-MSCHAPv2, inside IKE_AUTH.
//! - `notify`: Notify payloads and the types used.
//! - `nat`: NAT detection hashes.
//! - `offer`: an initiator's policy written as SA proposals.
//! - `cbc`: AES-CBC with a truncated HMAC (encrypt-then-MAC), for the OS clients' defaults.
//! - `cookie`: stateless cookies for a responder under load.
//! - `sa_init`: the IKE_SA_INIT exchange, responder and initiator.
//! - `salted_aead`: AES-GCM and ChaCha20-Poly1305 with IKE's and ESP's 4-byte salt.
//! - `sk`: the Encrypted payload, with an AEAD cipher or AES-CBC and an HMAC.
//! - `identity`: ID payloads and the PSK AUTH value.
//! - `certs`: certificates: CERT and CERTREQ, the trust store, RFC 7427 signatures.
//! - `selectors`: traffic selectors and their narrowing.
//! - `config_payload`: the CP payload: virtual addresses, DNS, split-tunnel subnets.
//! - `ike_auth`: the IKE_AUTH exchange with a PSK, responder and initiator.
//! - `login`: a client's whole login (IKE_SA_INIT, IKE_AUTH by any method) as one machine.
//! - `protected`: sealing and opening the messages of an IKE SA after IKE_SA_INIT.
//! - `fragments`: IKE fragmentation (RFC 7383), cutting and putting back together.
//! - `delete`: the Delete payload.
//! - `create_child`: CREATE_CHILD_SA rekeying a CHILD_SA, the responder's rules.
//! - `esp`: ESP packets in tunnel mode and the anti-replay window (the workers' rules).
//! - `ike_sa`: an IKE SA as the responder keeps it: authentication, retransmissions,
//!   INFORMATIONAL requests, liveness checks; events and a deadline out.
//! - `keys`: SKEYSEED and the IKE SA's keys, CHILD_SA keying material, rekeying.
//! - `error`: why a message or a derivation was refused.
#![forbid(unsafe_code)]

mod cbc;
mod certs;
mod config_payload;
mod cookie;
mod create_child;
mod delete;
mod dh;
pub mod eap;
mod error;
pub mod esp;
mod fragments;
mod header;
mod identity;
mod ike_auth;
mod ike_sa;
mod keys;
mod login;
mod message;
mod modp;
mod nat;
mod notify;
mod offer;
mod payloads;
mod prf;
mod proposals;
mod protected;
mod sa_init;
mod salted_aead;
mod selectors;
mod sk;
mod suite;
#[cfg(test)]
mod test_support;

pub use cbc::{CbcError, CbcHmac, BLOCK as CBC_BLOCK, MAX_ICV};
pub use certs::{
    cert_body, certreq_body, names_identity, pem_certificates, read_cert_body, read_signature_auth,
    verify_signature_auth, CertAuth, CertRefusal, Credential, CredentialError, PeerRole,
    TrustStore, MAX_CHAIN, X509_SIGNATURE,
};
pub use config_payload::{attr, Assignment, CfgType, ConfigPayload, CpAttribute};
pub use cookie::{CookieJar, COOKIE_LEN};
pub use create_child::{
    offers_ike, respond_ike_rekey, respond_rekey, RekeyRefusal, Rekeyed, ResponsePayloads,
};
pub use delete::Delete;
pub use dh::{ke_body, public_len, read_ke, DhError, KeyExchange};
pub use error::ParseError;
pub use fragments::{
    fragment_number, split as split_fragments, Reassembly, Taken, FRAGMENT_SIZE, MAX_FRAGMENTS,
};
pub use header::{ExchangeType, Flags, Header, HEADER_LEN, IKEV2_VERSION};
pub use identity::{
    auth_body, psk_auth, psk_auth_holds, read_auth, signed_octets, AuthMethod, IdType, Identity,
};
pub use ike_auth::{
    respond_auth, AuthAnswer, AuthInitiator, AuthOutcome, AuthRefusal, ChildSa, ClientCerts,
    EapInitiator, EapServer, EapStep, EspKeys, Established, Grant, ServerTrust, UserAuth, Users,
    AUTH_MESSAGE_ID, WRONG_PASSWORD,
};
pub use ike_sa::{AuthContext, DownReason, IkeSa, SaEvent, Timing};
pub use keys::{
    child_keymat, derive_ike_keys, derive_rekeyed_ike_keys, rekey_skeyseed, IkeKeys, KeyLengths,
};
pub use login::{Credentials, Login, LoginConfig, LoginStep};
pub use message::{Message, MAX_MESSAGE};
pub use nat::{nat_finding, nat_hash, NatFinding};
pub use notify::{Notify, NotifyType};
pub use payloads::{Payload, PayloadType};
pub use prf::{Prf, PrfError};
pub use proposals::{
    read_sa, write_sa, Proposal, ProtocolId, SaError, Transform, TransformType, MAX_ITEMS,
};
pub use protected::{
    open as protected_open, seal as protected_seal, Opened, Protected, ProtectedError,
};
pub use sa_init::{
    cookie_holds, cookie_reply, refuse_version, respond_init, Advance, Endpoints, HalfOpen,
    InitAnswer, InitRefusal, InitReply, InitiatorError, InitiatorInit,
};
pub use salted_aead::{AeadError, SaltedAead, ICV_LEN, IV_LEN};
pub use selectors::{narrow, read_ts, ts_body, TrafficSelector};
pub use sk::{SkCipher, SkError};
pub use suite::{choose, Chosen, DhGroup, Encr, Integ, NoProposalChosen, Policy, Suite};
