//! The Noise_IKpsk2 handshake (WireGuard paper §5.4.2–5.4.4) in both roles.
//!
//! Each step is a function from explicit state and message bytes to new state and bytes out.
//! The responder works in two stages so a caller can find the peer by its decrypted static key
//! before spending the second Diffie-Hellman: `open_initiation` then `accept_initiation` then
//! `create_response`. MACs and cookies are applied separately (see `cookie`).

use std::sync::OnceLock;

use rand_core::{CryptoRng, RngCore};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::constants::{CONSTRUCTION, IDENTIFIER, LABEL_COOKIE, LABEL_MAC1};
use crate::crypto::{aead_open, aead_seal, dh, hash, kdf1, kdf2, kdf3, DhKey, Key};
use crate::keys::{PresharedKey, PrivateKey, PublicKey};
use crate::tai64n::Tai64N;
use crate::wire::{emit_initiation, emit_response, Initiation, Response};

/// Why a handshake message was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    /// A public key in the message (or configured) is a low-order point.
    #[error("low-order public key")]
    LowOrderKey,
    /// The initiator's static key did not decrypt: the message was not made for our key.
    #[error("initiation is not addressed to our static key")]
    BadStatic,
    /// The timestamp did not decrypt: the sender does not hold the key it claims.
    #[error("initiation timestamp did not authenticate")]
    BadTimestamp,
    /// The response's empty payload did not decrypt: wrong keys or preshared key.
    #[error("response did not authenticate (wrong keys or preshared key?)")]
    BadResponse,
    /// The response answers a different initiation than the one pending.
    #[error("response for index {got:#x}, pending initiation is {pending:#x}")]
    WrongReceiver {
        /// Index in the response.
        got: u32,
        /// Index of our pending initiation.
        pending: u32,
    },
}

/// The keys and indices of a completed handshake, ready to become a transport session.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct SessionKeys {
    /// Our index: peers put it in the receiver field of packets for us.
    pub local_index: u32,
    /// The peer's index: we put it in the receiver field of packets for the peer.
    pub remote_index: u32,
    /// Key for packets we send.
    pub send: Key,
    /// Key for packets we receive.
    pub recv: Key,
    /// True if we initiated this handshake (only the initiator sends first and rekeys on age).
    pub initiator: bool,
}

impl std::fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionKeys")
            .field("local_index", &self.local_index)
            .field("remote_index", &self.remote_index)
            .field("initiator", &self.initiator)
            .finish_non_exhaustive()
    }
}

/// `HASH(CONSTRUCTION)`, the same for every handshake: computed once.
fn initial_chaining_key() -> Key {
    static CK: OnceLock<Key> = OnceLock::new();
    *CK.get_or_init(|| hash(&[CONSTRUCTION]))
}

fn initial_hash(responder_static: &PublicKey) -> Key {
    static H0: OnceLock<Key> = OnceLock::new();
    let h0 = H0.get_or_init(|| hash(&[&initial_chaining_key(), IDENTIFIER]));
    hash(&[h0, &responder_static.0])
}

/// Our static identity and the values every handshake derives from it.
pub struct LocalIdentity {
    secret: DhKey,
    public: PublicKey,
    /// `HASH("mac1----" || our public key)`: checks MAC1 of messages sent to us.
    pub mac1_key: Key,
    /// `HASH("cookie--" || our public key)`: seals the cookie replies we send.
    pub cookie_key: Key,
    initial_hash: Key,
}

impl LocalIdentity {
    /// Derives everything from our private key.
    pub fn new(private: &PrivateKey) -> Self {
        let public = private.public_key();
        Self {
            secret: private.dh_key(),
            mac1_key: hash(&[LABEL_MAC1, &public.0]),
            cookie_key: hash(&[LABEL_COOKIE, &public.0]),
            initial_hash: initial_hash(&public),
            public,
        }
    }

    /// Our public key.
    pub fn public_key(&self) -> PublicKey {
        self.public
    }
}

/// What we know of one peer. Values derived from its key are computed on first use: a
/// daemon loading 100,000 peers must not spend 3.6 s of X25519 (or even 0.1 s of hashing)
/// before it can answer anyone. (MAC keys for messages to it live in its `CookieJar`.)
pub struct RemotePeer {
    public: PublicKey,
    psk: PresharedKey,
    /// The identity `static_static` belongs to.
    local_public: PublicKey,
    /// `DH(our static, their static)`; `None` if their key is low-order.
    static_static: OnceLock<Option<Key>>,
    /// The handshake hash's start when we initiate to them.
    initial_hash: OnceLock<Key>,
}

impl RemotePeer {
    /// A peer of `local`; `psk` of all zeros means "no preshared key". Computes nothing yet.
    pub fn new(local: &LocalIdentity, public: PublicKey, psk: Option<PresharedKey>) -> Self {
        Self {
            local_public: local.public,
            static_static: OnceLock::new(),
            initial_hash: OnceLock::new(),
            psk: psk.unwrap_or(PresharedKey([0; 32])),
            public,
        }
    }

    fn initial_hash(&self) -> &Key {
        self.initial_hash.get_or_init(|| initial_hash(&self.public))
    }

    /// The peer's public key.
    pub fn public_key(&self) -> PublicKey {
        self.public
    }

    /// Computes now what the first handshake with the peer would otherwise compute (the
    /// static-static Diffie-Hellman and the initial hash), so it can be done ahead, in idle
    /// time, rather than during a login surge.
    /// Computes outside the cells' locks: a responder needing the value meanwhile computes
    /// it itself rather than wait for a thread that may run only when the core is idle.
    pub fn precompute(&self, local: &LocalIdentity) {
        if local.public == self.local_public && self.static_static.get().is_none() {
            let _ = self.static_static.set(dh(&local.secret, &self.public.0));
        }
        if self.initial_hash.get().is_none() {
            let _ = self.initial_hash.set(initial_hash(&self.public));
        }
    }

    /// True once `precompute` (or a handshake) has computed the static-static value.
    pub fn is_precomputed(&self) -> bool {
        self.static_static.get().is_some()
    }

    /// `DH(our static, their static)`, cached for the identity this peer was made with.
    fn static_static(&self, local: &LocalIdentity) -> Result<Key, HandshakeError> {
        let ss = if local.public == self.local_public {
            *self
                .static_static
                .get_or_init(|| dh(&local.secret, &self.public.0))
        } else {
            dh(&local.secret, &self.public.0)
        };
        ss.ok_or(HandshakeError::LowOrderKey)
    }
}

/// Our half of a handshake we initiated, kept until the response arrives.
#[derive(ZeroizeOnDrop)]
pub struct InitiatorHandshake {
    /// The index we chose; the response carries it as its receiver.
    #[zeroize(skip)]
    pub local_index: u32,
    #[zeroize(skip)]
    ephemeral: DhKey,
    chaining_key: Key,
    hash: Key,
}

/// A fresh ephemeral key from `rng` (so a seeded rng gives reproducible handshakes).
fn random_secret<R: RngCore + CryptoRng>(rng: &mut R) -> (DhKey, [u8; 32]) {
    let mut bytes = [0u8; 32];
    rng.fill_bytes(&mut bytes);
    let secret = DhKey::from_bytes(&bytes);
    bytes.zeroize();
    let public = secret.public_key();
    (secret, public)
}

/// Builds an initiation to `peer` (MACs still zero) and the state to finish it with.
pub fn create_initiation<R: RngCore + CryptoRng>(
    local: &LocalIdentity,
    peer: &RemotePeer,
    local_index: u32,
    timestamp: Tai64N,
    rng: &mut R,
) -> Result<(InitiatorHandshake, [u8; 148]), HandshakeError> {
    let static_static = peer.static_static(local)?;
    let (ephemeral, ephemeral_public) = random_secret(rng);

    let mut ck = kdf1(&initial_chaining_key(), &ephemeral_public);
    let mut h = hash(&[peer.initial_hash(), &ephemeral_public]);

    let es = dh(&ephemeral, &peer.public.0).ok_or(HandshakeError::LowOrderKey)?;
    let (c, k) = kdf2(&ck, &es);
    ck = c;
    let mut encrypted_static = [0u8; 48];
    encrypted_static[..32].copy_from_slice(&local.public.0);
    aead_seal(&k, 0, &h, &mut encrypted_static);
    h = hash(&[&h, &encrypted_static]);

    let (c, k) = kdf2(&ck, &static_static);
    ck = c;
    let mut encrypted_timestamp = [0u8; 28];
    encrypted_timestamp[..12].copy_from_slice(&timestamp.0);
    aead_seal(&k, 0, &h, &mut encrypted_timestamp);
    h = hash(&[&h, &encrypted_timestamp]);

    let message = emit_initiation(
        local_index,
        &ephemeral_public,
        &encrypted_static,
        &encrypted_timestamp,
    );
    Ok((
        InitiatorHandshake {
            local_index,
            ephemeral,
            chaining_key: ck,
            hash: h,
        },
        message,
    ))
}

/// Sets the sender index of a response from `create_response`. The index is not part of the
/// handshake hash, so it may be chosen after the public-key work, by whoever owns the indices.
pub fn assign_response_index(response: &mut [u8; 92], keys: &mut SessionKeys, index: u32) {
    response[4..8].copy_from_slice(&index.to_le_bytes());
    keys.local_index = index;
}

/// Finishes a handshake we initiated with the peer's response.
pub fn consume_response(
    state: &InitiatorHandshake,
    local: &LocalIdentity,
    peer: &RemotePeer,
    msg: &Response<'_>,
) -> Result<SessionKeys, HandshakeError> {
    if msg.receiver != state.local_index {
        return Err(HandshakeError::WrongReceiver {
            got: msg.receiver,
            pending: state.local_index,
        });
    }
    let mut ck = kdf1(&state.chaining_key, msg.ephemeral);
    let mut h = hash(&[&state.hash, msg.ephemeral]);
    let ee = dh(&state.ephemeral, msg.ephemeral).ok_or(HandshakeError::LowOrderKey)?;
    ck = kdf1(&ck, &ee);
    let se = dh(&local.secret, msg.ephemeral).ok_or(HandshakeError::LowOrderKey)?;
    ck = kdf1(&ck, &se);
    let (c, t, k) = kdf3(&ck, &peer.psk.0);
    ck = c;
    h = hash(&[&h, &t]);
    aead_open(&k, 0, &h, msg.encrypted_nothing, &mut [])
        .map_err(|_| HandshakeError::BadResponse)?;

    let (send, recv) = kdf2(&ck, &[]);
    ck.zeroize();
    Ok(SessionKeys {
        local_index: state.local_index,
        remote_index: msg.sender,
        send,
        recv,
        initiator: true,
    })
}

/// An initiation whose sender we have identified but not yet authenticated.
#[derive(ZeroizeOnDrop)]
pub struct OpenedInitiation {
    /// The initiator's static public key, as decrypted.
    #[zeroize(skip)]
    pub initiator: PublicKey,
    /// The initiator's session index.
    #[zeroize(skip)]
    pub sender: u32,
    ephemeral: [u8; 32],
    encrypted_timestamp: [u8; 28],
    chaining_key: Key,
    hash: Key,
}

/// Stage one of answering an initiation: recovers who claims to have sent it (one DH).
pub fn open_initiation(
    local: &LocalIdentity,
    msg: &Initiation<'_>,
) -> Result<OpenedInitiation, HandshakeError> {
    let mut ck = kdf1(&initial_chaining_key(), msg.ephemeral);
    let mut h = hash(&[&local.initial_hash, msg.ephemeral]);
    let es = dh(&local.secret, msg.ephemeral).ok_or(HandshakeError::LowOrderKey)?;
    let (c, k) = kdf2(&ck, &es);
    ck = c;
    let mut initiator = [0u8; 32];
    aead_open(&k, 0, &h, msg.encrypted_static, &mut initiator)
        .map_err(|_| HandshakeError::BadStatic)?;
    h = hash(&[&h, msg.encrypted_static]);
    Ok(OpenedInitiation {
        initiator: PublicKey(initiator),
        sender: msg.sender,
        ephemeral: *msg.ephemeral,
        encrypted_timestamp: *msg.encrypted_timestamp,
        chaining_key: ck,
        hash: h,
    })
}

/// An authenticated initiation: the caller checks its timestamp against replay, then answers.
#[derive(ZeroizeOnDrop)]
pub struct AcceptedInitiation {
    /// The initiator's TAI64N timestamp; must exceed the last one accepted from this peer.
    #[zeroize(skip)]
    pub timestamp: Tai64N,
    /// The initiator's session index.
    #[zeroize(skip)]
    pub sender: u32,
    initiator: [u8; 32],
    ephemeral: [u8; 32],
    chaining_key: Key,
    hash: Key,
}

/// Stage two: authenticates the initiation as coming from `peer` (static DH, cached per peer).
pub fn accept_initiation(
    local: &LocalIdentity,
    opened: OpenedInitiation,
    peer: &RemotePeer,
) -> Result<AcceptedInitiation, HandshakeError> {
    let static_static = peer.static_static(local)?;
    let (ck, k) = kdf2(&opened.chaining_key, &static_static);
    let mut timestamp = [0u8; 12];
    aead_open(
        &k,
        0,
        &opened.hash,
        &opened.encrypted_timestamp,
        &mut timestamp,
    )
    .map_err(|_| HandshakeError::BadTimestamp)?;
    Ok(AcceptedInitiation {
        timestamp: Tai64N(timestamp),
        sender: opened.sender,
        initiator: opened.initiator.0,
        ephemeral: opened.ephemeral,
        chaining_key: ck,
        hash: hash(&[&opened.hash, &opened.encrypted_timestamp]),
    })
}

/// Stage three: the response (MACs still zero) and the new session's keys.
pub fn create_response<R: RngCore + CryptoRng>(
    accepted: &AcceptedInitiation,
    peer: &RemotePeer,
    local_index: u32,
    rng: &mut R,
) -> Result<([u8; 92], SessionKeys), HandshakeError> {
    let (ephemeral, ephemeral_public) = random_secret(rng);
    let mut ck = kdf1(&accepted.chaining_key, &ephemeral_public);
    let mut h = hash(&[&accepted.hash, &ephemeral_public]);
    let ee = dh(&ephemeral, &accepted.ephemeral).ok_or(HandshakeError::LowOrderKey)?;
    ck = kdf1(&ck, &ee);
    let se = dh(&ephemeral, &accepted.initiator).ok_or(HandshakeError::LowOrderKey)?;
    ck = kdf1(&ck, &se);
    let (c, t, k) = kdf3(&ck, &peer.psk.0);
    ck = c;
    h = hash(&[&h, &t]);
    let mut encrypted_nothing = [0u8; 16];
    aead_seal(&k, 0, &h, &mut encrypted_nothing);

    let (recv, send) = kdf2(&ck, &[]);
    ck.zeroize();
    let message = emit_response(
        local_index,
        accepted.sender,
        &ephemeral_public,
        &encrypted_nothing,
    );
    Ok((
        message,
        SessionKeys {
            local_index,
            remote_index: accepted.sender,
            send,
            recv,
            initiator: false,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Message;
    use rand_chacha::rand_core::SeedableRng;
    use rand_chacha::ChaCha20Rng;
    use std::time::Duration;

    fn pair(psk: Option<[u8; 32]>) -> (LocalIdentity, RemotePeer, LocalIdentity, RemotePeer) {
        let a = LocalIdentity::new(&PrivateKey::from_bytes([1; 32]));
        let b = LocalIdentity::new(&PrivateKey::from_bytes([2; 32]));
        let a_sees_b = RemotePeer::new(&a, b.public_key(), psk.map(PresharedKey));
        let b_sees_a = RemotePeer::new(&b, a.public_key(), psk.map(PresharedKey));
        (a, a_sees_b, b, b_sees_a)
    }

    fn run(psk_a: Option<[u8; 32]>, psk_b: Option<[u8; 32]>) -> Result<(), HandshakeError> {
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        let (a, a_sees_b, b, _) = pair(psk_a);
        let b_sees_a = RemotePeer::new(&b, a.public_key(), psk_b.map(PresharedKey));
        let ts = Tai64N::from_unix(Duration::from_secs(1));
        let (state, init) = create_initiation(&a, &a_sees_b, 11, ts, &mut rng)?;
        let Ok(Message::Initiation(init)) = Message::parse(&init) else {
            panic!("initiation parses")
        };
        let opened = open_initiation(&b, &init)?;
        assert_eq!(opened.initiator, a.public_key());
        let accepted = accept_initiation(&b, opened, &b_sees_a)?;
        assert_eq!(accepted.timestamp, ts);
        let (mut resp, mut b_keys) = create_response(&accepted, &b_sees_a, 0, &mut rng)?;
        // The index may be chosen after the public-key work.
        assign_response_index(&mut resp, &mut b_keys, 22);
        let Ok(Message::Response(resp)) = Message::parse(&resp) else {
            panic!("response parses")
        };
        let a_keys = consume_response(&state, &a, &a_sees_b, &resp)?;
        assert_eq!(a_keys.send, b_keys.recv);
        assert_eq!(a_keys.recv, b_keys.send);
        assert_ne!(a_keys.send, a_keys.recv);
        assert_eq!((a_keys.local_index, a_keys.remote_index), (11, 22));
        assert_eq!((b_keys.local_index, b_keys.remote_index), (22, 11));
        assert!(a_keys.initiator && !b_keys.initiator);
        Ok(())
    }

    #[test]
    fn both_roles_derive_matching_keys() {
        run(None, None).expect("handshake without psk");
        run(Some([9; 32]), Some([9; 32])).expect("handshake with psk");
    }

    #[test]
    fn mismatched_psk_fails_at_the_initiator() {
        assert_eq!(run(Some([9; 32]), None), Err(HandshakeError::BadResponse));
    }

    #[test]
    fn initiation_for_another_responder_is_rejected() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let (a, a_sees_b, _, _) = pair(None);
        let c = LocalIdentity::new(&PrivateKey::from_bytes([3; 32]));
        let (_, init) =
            create_initiation(&a, &a_sees_b, 1, Tai64N::default(), &mut rng).expect("init");
        let Ok(Message::Initiation(init)) = Message::parse(&init) else {
            panic!("parses")
        };
        assert!(matches!(
            open_initiation(&c, &init),
            Err(HandshakeError::BadStatic)
        ));
    }

    #[test]
    fn claimed_identity_without_its_key_fails_the_timestamp() {
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        let (a, a_sees_b, b, _) = pair(None);
        let (_, init) =
            create_initiation(&a, &a_sees_b, 1, Tai64N::default(), &mut rng).expect("init");
        let Ok(Message::Initiation(init)) = Message::parse(&init) else {
            panic!("parses")
        };
        let opened = open_initiation(&b, &init).expect("static decrypts");
        // The responder looks up a different peer than the one that really sent it.
        let impostor = RemotePeer::new(&b, PrivateKey::from_bytes([5; 32]).public_key(), None);
        assert!(matches!(
            accept_initiation(&b, opened, &impostor),
            Err(HandshakeError::BadTimestamp)
        ));
    }
}
