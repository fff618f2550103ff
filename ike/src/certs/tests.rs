//! The certificate checks against a PKI made by rcgen: ECDSA and RSA chains verify and sign,
//! and each way a certificate can be wrong is refused with its own reason.

use ring::rand::SystemRandom;

use super::*;
use crate::identity::Identity;
use crate::test_support::{ca, crl, der, leaf, NOW};

#[test]
fn ecdsa_and_rsa_credentials_sign_what_the_trust_store_verifies() {
    let rng = SystemRandom::new();
    for alg in [&rcgen::PKCS_ECDSA_P256_SHA256, &rcgen::PKCS_RSA_SHA256] {
        let ca = ca(&rcgen::PKCS_ECDSA_P256_SHA256);
        let (cert, key) = leaf(&ca, alg, "alice@example.com", 2, None);
        let own = Credential::from_pem(cert.as_bytes(), key.as_bytes(), &rng).expect("own");
        let id = Identity::from_text("alice@example.com");
        own.check_identity(&id).expect("names alice");
        assert!(own
            .check_identity(&Identity::from_text("bob@example.com"))
            .is_err());
        let store = TrustStore::from_pem(ca.pem.as_bytes(), None).expect("store");
        let chain: Vec<&[u8]> = own.chain().iter().map(Vec::as_slice).collect();
        store
            .verify(&chain, (&id, PeerRole::Client), NOW)
            .expect("trusted");
        let auth = own.sign_auth(b"signed octets", &rng).expect("sign");
        verify_signature_auth(chain[0], b"signed octets", &auth).expect("verifies");
        assert_eq!(
            verify_signature_auth(chain[0], b"other octets", &auth),
            Err(CertRefusal::BadSignature)
        );
        let (alg_id, _) = read_signature_auth(&auth).expect("RFC 7427 layout");
        assert_eq!(alg_id[0], 0x06, "an OID first in the AlgorithmIdentifier");
    }
}

#[test]
fn every_wrong_certificate_is_refused_for_its_own_reason() {
    let ca1 = ca(&rcgen::PKCS_ECDSA_P256_SHA256);
    let stranger = ca(&rcgen::PKCS_ECDSA_P256_SHA256);
    let p256 = &rcgen::PKCS_ECDSA_P256_SHA256;
    let id = Identity::from_text("alice@example.com");
    let revoked = crl(&ca1, &[9]);
    let store = TrustStore::from_pem(ca1.pem.as_bytes(), Some(revoked.as_bytes())).expect("s");
    let check = |pem: &str, id: &Identity| store.verify(&[&der(pem)], (id, PeerRole::Client), NOW);
    let (good, _) = leaf(&ca1, p256, "alice@example.com", 2, None);
    assert_eq!(check(&good, &id), Ok(()));
    let (other_ca, _) = leaf(&stranger, p256, "alice@example.com", 2, None);
    assert_eq!(check(&other_ca, &id), Err(CertRefusal::Untrusted));
    let (expired, _) = leaf(&ca1, p256, "alice@example.com", 3, Some((2000, 2001)));
    assert_eq!(check(&expired, &id), Err(CertRefusal::Expired));
    let (early, _) = leaf(&ca1, p256, "alice@example.com", 4, Some((2090, 2095)));
    assert_eq!(check(&early, &id), Err(CertRefusal::NotYetValid));
    let (gone, _) = leaf(&ca1, p256, "alice@example.com", 9, None);
    assert_eq!(check(&gone, &id), Err(CertRefusal::Revoked));
    let bob = Identity::from_text("bob@example.com");
    assert!(matches!(
        check(&good, &bob),
        Err(CertRefusal::IdentityMismatch(_))
    ));
    let (host, _) = leaf(&ca1, p256, "vpn.example.com", 5, None);
    assert_eq!(
        check(&host, &Identity::from_text("VPN.example.com")),
        Ok(())
    );
    assert_eq!(
        store.verify(&[], (&id, PeerRole::Client), NOW),
        Err(CertRefusal::Missing)
    );
    let five: Vec<&[u8]> = vec![b"x"; 5];
    assert_eq!(
        store.verify(&five, (&id, PeerRole::Client), NOW),
        Err(CertRefusal::ChainTooLong)
    );
    assert!(matches!(
        store.verify(&[b"not DER"], (&id, PeerRole::Client), NOW),
        Err(CertRefusal::Unreadable(_))
    ));
    assert_eq!(store.digests().len(), 1);
}

#[test]
fn a_key_of_another_certificate_or_a_bad_file_is_refused_with_what_is_wrong() {
    let rng = SystemRandom::new();
    let ca = ca(&rcgen::PKCS_ECDSA_P256_SHA256);
    let p256 = &rcgen::PKCS_ECDSA_P256_SHA256;
    let (cert, _) = leaf(&ca, p256, "vpn.example.com", 2, None);
    let (_, other_key) = leaf(&ca, p256, "vpn.example.com", 3, None);
    assert_eq!(
        Credential::from_pem(cert.as_bytes(), other_key.as_bytes(), &rng).map(|_| ()),
        Err(CredentialError::Mismatch)
    );
    let e = Credential::from_pem(b"nothing", other_key.as_bytes(), &rng).expect_err("no cert");
    assert!(e.to_string().contains("no CERTIFICATE"), "{e}");
    assert!(TrustStore::from_pem(b"", None).is_err());
}

#[test]
fn rfc_7427_auth_data_is_read_only_when_well_formed() {
    assert!(read_signature_auth(&[]).is_err());
    assert!(
        read_signature_auth(&[3, 0x30, 1, 6]).is_err(),
        "no signature"
    );
    assert!(
        read_signature_auth(&[3, 0x31, 1, 6, 9]).is_err(),
        "not a SEQUENCE"
    );
    assert!(
        read_signature_auth(&[3, 0x30, 5, 6, 9]).is_err(),
        "inner length"
    );
    assert_eq!(
        read_signature_auth(&[3, 0x30, 1, 6, 9, 9]),
        Ok((&[6u8][..], &[9u8, 9][..]))
    );
    // An identifier named nowhere here.
    let ca = ca(&rcgen::PKCS_ECDSA_P256_SHA256);
    let (cert, _) = leaf(&ca, &rcgen::PKCS_ECDSA_P256_SHA256, "a.example", 2, None);
    assert_eq!(
        verify_signature_auth(&der(&cert), b"x", &[3, 0x30, 1, 6, 9, 9]),
        Err(CertRefusal::UnsupportedAlgorithm)
    );
    assert_eq!(cert_body(b"der")[0], X509_SIGNATURE);
    assert_eq!(read_cert_body(&cert_body(b"der")), Some(&b"der"[..]));
    assert_eq!(read_cert_body(&[12, 1, 2]), None, "hash and URL");
    assert_eq!(certreq_body(&[[7; 20]]).len(), 21);
}

#[test]
fn a_client_certificate_cannot_pose_as_the_server_nor_the_other_way_round() {
    use rcgen::{CertificateParams, ExtendedKeyUsagePurpose as Eku, KeyPair, SanType};
    let ca = ca(&rcgen::PKCS_ECDSA_P256_SHA256);
    let store = TrustStore::from_pem(ca.pem.as_bytes(), None).expect("store");
    let id = Identity::from_text("vpn.example.com");
    let issued = |ekus: Vec<Eku>| {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        let mut p = CertificateParams::default();
        p.subject_alt_names = vec![SanType::DnsName("vpn.example.com".try_into().expect("n"))];
        p.extended_key_usages = ekus;
        p.signed_by(&key, &ca.issuer).expect("cert").der().to_vec()
    };
    let client = issued(vec![Eku::ClientAuth]);
    let server = issued(vec![Eku::ServerAuth]);
    let ike = issued(vec![Eku::Other(vec![1, 3, 6, 1, 5, 5, 7, 3, 17])]);
    let check = |der: &[u8], role| store.verify(&[der], (&id, role), NOW);
    assert_eq!(
        check(&client, PeerRole::Server),
        Err(CertRefusal::WrongUsage)
    );
    assert_eq!(
        check(&server, PeerRole::Client),
        Err(CertRefusal::WrongUsage)
    );
    assert_eq!(check(&client, PeerRole::Client), Ok(()));
    assert_eq!(check(&server, PeerRole::Server), Ok(()));
    assert_eq!(
        check(&ike, PeerRole::Server),
        Ok(()),
        "ipsecIKE serves both"
    );
}
