//! EAP inside IKE_AUTH (RFC 7296 §2.16): the EAP packet (RFC 3748) and the one method spoken,
//! EAP-MSCHAPv2 (RFC 2759's computations, RFC 3079's keys; the packet layout of
//! draft-kamath-pppext-eap-mschapv2), which the VPN clients of Windows and Apple systems use
//! to log in with a password.
//!
//! - `packet`: an EAP packet read and written.
//! - `mschapv2`: the NT hash, the challenge and responses, the MSK, and the method's packets.

pub mod mschapv2;
mod packet;

pub use packet::{EapCode, EapError, EapPacket, EAP_IDENTITY, EAP_MSCHAPV2, EAP_NAK};
