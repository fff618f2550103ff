//! EAP-MSCHAPv2: RFC 2759's computations (the NT hash, the challenge hash, the NT-Response,
//! the authenticator response), RFC 3079's master key and the 64-byte MSK IKEv2 takes from
//! it (the two 16-byte start keys, then 32 zero bytes, as Windows and strongSwan make it), and
//! the method's packets (the type data of EAP type 26: opcode, MS-CHAPv2 ID, MS-Length,
//! then the opcode's fields).
//!
//! MD4 and DES are RustCrypto's (ring has neither), SHA-1 ring's. The NT hash is
//! password-equivalent: whoever has it can log in as the user.

use des::cipher::{BlockEncrypt, KeyInit};
use md4::{Digest, Md4};
use ring::digest;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// The length of either side's challenge.
pub const CHALLENGE_LEN: usize = 16;
/// The NT-Response's length.
pub const NT_RESPONSE_LEN: usize = 24;

const MAGIC_AUTH_1: &[u8] = b"Magic server to client signing constant";
const MAGIC_AUTH_2: &[u8] = b"Pad to make it do more than one iteration";
const MAGIC_MASTER: &[u8] = b"This is the MPPE Master Key";
const MAGIC_CLIENT_SEND: &[u8] =
    b"On the client side, this is the send key; on the server side, it is the receive key.";
const MAGIC_CLIENT_RECEIVE: &[u8] =
    b"On the client side, this is the receive key; on the server side, it is the send key.";

/// An MS-CHAPv2 opcode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opcode {
    /// The authenticator's challenge.
    Challenge = 1,
    /// The peer's response.
    Response = 2,
    /// Success (the authenticator's response, or the peer's acknowledgement).
    Success = 3,
    /// Failure.
    Failure = 4,
}

/// Why an MS-CHAPv2 packet could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MschapError {
    /// Too short for its opcode's fields.
    #[error("MS-CHAPv2 packet truncated")]
    Truncated,
    /// Another opcode than expected.
    #[error("MS-CHAPv2 opcode {0} where another was expected")]
    Opcode(u8),
    /// A value size other than the opcode's.
    #[error("MS-CHAPv2 value size {0}")]
    ValueSize(u8),
}

/// The NT hash of a password: MD4 of its UTF-16LE form (RFC 2759 §8.3). What the registry
/// keeps of an EAP user's password; Debug leaves it out.
#[derive(Clone, PartialEq, Eq)]
pub struct NtHash(Zeroizing<[u8; 16]>);

impl std::fmt::Debug for NtHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NtHash(..)")
    }
}

fn md4(data: &[u8]) -> [u8; 16] {
    Md4::digest(data).into()
}

fn sha1(parts: &[&[u8]]) -> [u8; 20] {
    let mut ctx = digest::Context::new(&digest::SHA1_FOR_LEGACY_USE_ONLY);
    for part in parts {
        ctx.update(part);
    }
    let mut out = [0u8; 20];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

impl NtHash {
    /// The hash of `password`.
    pub fn of_password(password: &str) -> Self {
        let utf16: Zeroizing<Vec<u8>> =
            Zeroizing::new(password.encode_utf16().flat_map(u16::to_le_bytes).collect());
        Self(Zeroizing::new(md4(&utf16)))
    }

    /// A hash as stored.
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// Its bytes, to store.
    pub fn bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// MD4 of the hash (RFC 2759 §8.4), which the authenticator response and keys use.
    fn hash_hash(&self) -> Zeroizing<[u8; 16]> {
        Zeroizing::new(md4(&self.0[..]))
    }
}

/// The user name the challenge hash takes: without a "DOMAIN\" in front (RFC 2759 §8.2).
pub fn bare_user_name(name: &[u8]) -> &[u8] {
    match name.iter().rposition(|b| *b == b'\\') {
        Some(at) => &name[at + 1..],
        None => name,
    }
}

/// SHA-1 of both challenges and the user name, its first 8 bytes (RFC 2759 §8.2).
fn challenge_hash(peer: &[u8; 16], auth: &[u8; 16], user: &[u8]) -> [u8; 8] {
    let full = sha1(&[peer, auth, bare_user_name(user)]);
    let mut out = [0u8; 8];
    out.copy_from_slice(&full[..8]);
    out
}

/// A DES key from 7 bytes: each 7 bits become a byte, the low (parity) bit left 0, which DES
/// ignores (RFC 2759 §8.6).
fn des_key(seven: &[u8]) -> [u8; 8] {
    let mut bits = 0u64;
    for b in seven {
        bits = (bits << 8) | u64::from(*b);
    }
    let mut key = [0u8; 8];
    for (i, k) in key.iter_mut().enumerate() {
        *k = (((bits >> (49 - 7 * i)) & 0x7f) as u8) << 1;
    }
    key
}

/// The 8-byte challenge encrypted under the three DES keys cut from the zero-padded hash
/// (RFC 2759 §8.5).
fn challenge_response(challenge: &[u8; 8], hash: &[u8; 16]) -> [u8; NT_RESPONSE_LEN] {
    let mut padded = Zeroizing::new([0u8; 21]);
    padded[..16].copy_from_slice(hash);
    let mut out = [0u8; NT_RESPONSE_LEN];
    for (i, chunk) in padded.chunks(7).enumerate() {
        let key = Zeroizing::new(des_key(chunk));
        // An 8-byte key always fits DES.
        let Ok(cipher) = des::Des::new_from_slice(&key[..]) else {
            continue;
        };
        let mut block = des::cipher::generic_array::GenericArray::clone_from_slice(challenge);
        cipher.encrypt_block(&mut block);
        out[8 * i..8 * i + 8].copy_from_slice(&block);
    }
    out
}

/// The peer's NT-Response to the authenticator's challenge `auth`, with its own `peer`
/// challenge, as user `user` (RFC 2759 §8.1).
pub fn nt_response(
    auth: &[u8; 16],
    peer: &[u8; 16],
    user: &[u8],
    hash: &NtHash,
) -> [u8; NT_RESPONSE_LEN] {
    challenge_response(&challenge_hash(peer, auth, user), &hash.0)
}

/// Whether `received` is the NT-Response of the password whose hash is `hash`, compared in
/// constant time.
pub fn nt_response_holds(
    (auth, peer): (&[u8; 16], &[u8; 16]),
    user: &[u8],
    hash: &NtHash,
    received: &[u8; NT_RESPONSE_LEN],
) -> bool {
    bool::from(nt_response(auth, peer, user, hash).ct_eq(received))
}

/// The authenticator response, "S=" and 40 upper-case hex digits (RFC 2759 §8.7): proves to
/// the peer that the authenticator knows the password too.
pub fn authenticator_response(
    hash: &NtHash,
    nt_response: &[u8; NT_RESPONSE_LEN],
    (auth, peer): (&[u8; 16], &[u8; 16]),
    user: &[u8],
) -> String {
    let digest = sha1(&[&hash.hash_hash()[..], nt_response, MAGIC_AUTH_1]);
    let challenge = challenge_hash(peer, auth, user);
    let full = sha1(&[&digest, &challenge, MAGIC_AUTH_2]);
    let hex: String = full.iter().map(|b| format!("{b:02X}")).collect();
    format!("S={hex}")
}

/// RFC 3079 §3.4's master key.
fn master_key(hash: &NtHash, nt_response: &[u8; NT_RESPONSE_LEN]) -> Zeroizing<[u8; 16]> {
    let full = sha1(&[&hash.hash_hash()[..], nt_response, MAGIC_MASTER]);
    let mut out = Zeroizing::new([0u8; 16]);
    out.copy_from_slice(&full[..16]);
    out
}

/// RFC 3079 §3.4's start key for one magic: SHA-1 of the master key, 40 zeros, the magic,
/// 40 bytes of 0xf2, cut to 16 bytes.
fn start_key(master: &[u8; 16], magic: &[u8]) -> [u8; 16] {
    let full = sha1(&[master, &[0u8; 40], magic, &[0xf2u8; 40]]);
    let mut out = [0u8; 16];
    out.copy_from_slice(&full[..16]);
    out
}

/// The MSK both sides take into IKE's AUTH (RFC 7296 §2.16): the client's send key, its
/// receive key, then 32 zero bytes.
pub fn msk(hash: &NtHash, nt_response: &[u8; NT_RESPONSE_LEN]) -> Zeroizing<Vec<u8>> {
    let master = master_key(hash, nt_response);
    let mut out = Zeroizing::new(vec![0u8; 64]);
    out[..16].copy_from_slice(&start_key(&master, MAGIC_CLIENT_SEND));
    out[16..32].copy_from_slice(&start_key(&master, MAGIC_CLIENT_RECEIVE));
    out
}

/// The type data of an MS-CHAPv2 packet: opcode, ID, MS-Length (the type data's own length),
/// then `fields`.
fn packet(op: Opcode, id: u8, fields: &[&[u8]]) -> Vec<u8> {
    let len: usize = 4 + fields.iter().map(|f| f.len()).sum::<usize>();
    let mut out = Vec::with_capacity(len);
    out.push(op as u8);
    out.push(id);
    out.extend_from_slice(&(len.min(usize::from(u16::MAX)) as u16).to_be_bytes());
    for f in fields {
        out.extend_from_slice(f);
    }
    out
}

/// The authenticator's Challenge, naming itself `name`.
pub fn challenge_packet(id: u8, challenge: &[u8; CHALLENGE_LEN], name: &[u8]) -> Vec<u8> {
    packet(Opcode::Challenge, id, &[&[16], challenge, name])
}

/// The authenticator's Success, carrying its authenticator response.
pub fn success_packet(id: u8, authenticator_response: &str) -> Vec<u8> {
    let message = format!("{authenticator_response} M=Welcome");
    packet(Opcode::Success, id, &[message.as_bytes()])
}

/// The authenticator's Failure: E=691 (authentication failure), no retry (R=0), version 3.
pub fn failure_packet(id: u8, challenge: &[u8; CHALLENGE_LEN]) -> Vec<u8> {
    let c: String = challenge.iter().map(|b| format!("{b:02X}")).collect();
    let message = format!("E=691 R=0 C={c} V=3 M=Authentication failed");
    packet(Opcode::Failure, id, &[message.as_bytes()])
}

/// The peer's one-byte Success or Failure acknowledgement.
pub fn acknowledgement(op: Opcode) -> Vec<u8> {
    vec![op as u8]
}

/// The opcode of the type data `data`.
pub fn opcode_of(data: &[u8]) -> Option<u8> {
    data.first().copied()
}

/// A peer's Response, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response<'a> {
    /// The MS-CHAPv2 ID (the Challenge's).
    pub id: u8,
    /// The peer's challenge.
    pub peer_challenge: [u8; CHALLENGE_LEN],
    /// Its NT-Response.
    pub nt_response: [u8; NT_RESPONSE_LEN],
    /// The user name it sent.
    pub name: &'a [u8],
}

/// The value of a Response: peer challenge, 8 reserved bytes, NT-Response, flags.
const RESPONSE_VALUE: usize = CHALLENGE_LEN + 8 + NT_RESPONSE_LEN + 1;

impl<'a> Response<'a> {
    /// Reads a Response's type data.
    pub fn read(data: &'a [u8]) -> Result<Self, MschapError> {
        let [op, id, _, _, size, rest @ ..] = data else {
            return Err(MschapError::Truncated);
        };
        if *op != Opcode::Response as u8 {
            return Err(MschapError::Opcode(*op));
        }
        if usize::from(*size) != RESPONSE_VALUE {
            return Err(MschapError::ValueSize(*size));
        }
        let value = rest.get(..RESPONSE_VALUE).ok_or(MschapError::Truncated)?;
        let mut peer_challenge = [0u8; CHALLENGE_LEN];
        peer_challenge.copy_from_slice(&value[..CHALLENGE_LEN]);
        let mut nt_response = [0u8; NT_RESPONSE_LEN];
        nt_response.copy_from_slice(&value[CHALLENGE_LEN + 8..CHALLENGE_LEN + 8 + 24]);
        Ok(Self {
            id: *id,
            peer_challenge,
            nt_response,
            name: &rest[RESPONSE_VALUE..],
        })
    }

    /// Its type data.
    pub fn write(&self) -> Vec<u8> {
        packet(
            Opcode::Response,
            self.id,
            &[
                &[RESPONSE_VALUE as u8],
                &self.peer_challenge,
                &[0u8; 8],
                &self.nt_response,
                &[0],
                self.name,
            ],
        )
    }
}

/// An authenticator's Challenge, read: its ID, challenge and name.
pub fn read_challenge(data: &[u8]) -> Result<(u8, [u8; CHALLENGE_LEN]), MschapError> {
    let [op, id, _, _, size, rest @ ..] = data else {
        return Err(MschapError::Truncated);
    };
    if *op != Opcode::Challenge as u8 {
        return Err(MschapError::Opcode(*op));
    }
    if usize::from(*size) != CHALLENGE_LEN {
        return Err(MschapError::ValueSize(*size));
    }
    let value = rest.get(..CHALLENGE_LEN).ok_or(MschapError::Truncated)?;
    let mut challenge = [0u8; CHALLENGE_LEN];
    challenge.copy_from_slice(value);
    Ok((*id, challenge))
}

/// An authenticator's Success, read: its message ("S=... M=...").
pub fn read_success(data: &[u8]) -> Result<&[u8], MschapError> {
    let [op, _, _, _, message @ ..] = data else {
        return Err(MschapError::Truncated);
    };
    if *op != Opcode::Success as u8 {
        return Err(MschapError::Opcode(*op));
    }
    Ok(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s).expect("hex")
    }

    fn a16(s: &str) -> [u8; 16] {
        h(s).try_into().expect("16 bytes")
    }

    const AUTH: &str = "5B5D7C7D7B3F2F3E3C2C602132262628";
    const PEER: &str = "21402324255E262A28295F2B3A337C7E";

    /// RFC 2759 §9.2's example, every intermediate value.
    #[test]
    fn rfc_2759_section_9_2() {
        let hash = NtHash::of_password("clientPass");
        assert_eq!(hash.bytes()[..], h("44EBBA8D5312B8D611474411F56989AE")[..]);
        assert_eq!(
            hash.hash_hash()[..],
            h("41C00C584BD2D91C4017A2A12FA59F3F")[..]
        );
        let (auth, peer) = (a16(AUTH), a16(PEER));
        assert_eq!(
            challenge_hash(&peer, &auth, b"User")[..],
            h("D02E4386BCE91226")[..]
        );
        let nt = nt_response(&auth, &peer, b"User", &hash);
        assert_eq!(
            nt[..],
            h("82309ECD8D708B5EA08FAA3981CD83544233114A3D85D6DF")[..]
        );
        assert!(nt_response_holds((&auth, &peer), b"User", &hash, &nt));
        let mut wrong = nt;
        wrong[23] ^= 1;
        assert!(!nt_response_holds((&auth, &peer), b"User", &hash, &wrong));
        assert_eq!(
            authenticator_response(&hash, &nt, (&auth, &peer), b"User"),
            "S=407A5589115FD0D6209F510FE9C04566932CDA56"
        );
        // A domain in front of the name does not change the hash.
        assert_eq!(nt_response(&auth, &peer, b"CORP\\User", &hash), nt);
    }

    /// RFC 3079 §3.5.3's master key and 128-bit start keys (its "SendStartKey128" is the
    /// server's send key, the client's receive key), and the MSK's layout.
    #[test]
    fn rfc_3079_keys_and_the_msk() {
        let hash = NtHash::of_password("clientPass");
        let nt: [u8; 24] = h("82309ECD8D708B5EA08FAA3981CD83544233114A3D85D6DF")
            .try_into()
            .expect("24");
        let master = master_key(&hash, &nt);
        assert_eq!(master[..], h("FDECE3717A8C838CB388E527AE3CDD31")[..]);
        let msk = msk(&hash, &nt);
        assert_eq!(msk.len(), 64);
        assert_eq!(msk[..16], h("D5F0E9521E3EA9589645E86051C82226")[..]);
        assert_eq!(msk[16..32], h("8B7CDC149B993A1BA118CB153F56DCCB")[..]);
        assert_eq!(msk[32..], [0u8; 32]);
    }

    /// MD4 against RFC 1320's own test suite, and the 7-to-8-byte DES key expansion (DES
    /// itself is checked by RFC 2759's NT-Response above).
    #[test]
    fn md4_and_the_des_keys_match_their_standards() {
        assert_eq!(md4(b"abc")[..], h("a448017aaf21d8525fc10ae87aa6729d")[..]);
        assert_eq!(md4(b"")[..], h("31d6cfe0d16ae931b73c59d7e0c089c0")[..]);
        // 7-byte expansion: 56 one-bits become eight 0xfe bytes.
        assert_eq!(des_key(&[0xff; 7]), [0xfe; 8]);
        assert_eq!(des_key(&[0; 7]), [0; 8]);
        assert_eq!(
            des_key(&[0x80, 0, 0, 0, 0, 0, 0]),
            [0x80, 0, 0, 0, 0, 0, 0, 0]
        );
    }

    #[test]
    fn packets_round_trip_and_bad_ones_are_refused() {
        let r = Response {
            id: 5,
            peer_challenge: a16(PEER),
            nt_response: [7; 24],
            name: b"alice",
        };
        let data = r.write();
        assert_eq!(data.len(), 4 + 1 + 49 + 5);
        assert_eq!(u16::from_be_bytes([data[2], data[3]]) as usize, data.len());
        assert_eq!(Response::read(&data), Ok(r));
        assert_eq!(Response::read(&data[..40]), Err(MschapError::Truncated));
        let c = challenge_packet(5, &a16(AUTH), b"xgate");
        assert_eq!(read_challenge(&c), Ok((5, a16(AUTH))));
        assert_eq!(Response::read(&c), Err(MschapError::Opcode(1)));
        let mut bad = data.clone();
        bad[4] = 48;
        assert_eq!(Response::read(&bad), Err(MschapError::ValueSize(48)));
        let s = success_packet(5, "S=00");
        assert_eq!(read_success(&s), Ok(&b"S=00 M=Welcome"[..]));
        assert!(String::from_utf8_lossy(&failure_packet(5, &[0; 16])).contains("E=691 R=0"));
    }
}
