//! What the datapath does to inner packets besides routing them: TCP MSS clamping so that
//! connections crossing the tunnel never build segments that do not fit it, and ICMP errors
//! that tell a sender its packet was too big for the tunnel; and cutting the TUN's offloaded
//! super-packets into tunnel-sized segments (`segment`), and runs of segments back into
//! super-packets for the TUN (`coalesce`).

pub mod checksum;
pub mod coalesce;
pub mod mss;
pub mod segment;
pub mod too_big;

pub use mss::{clamp_mss, mss_limit};
pub use too_big::{packet_too_big, TOO_BIG_MAX_LEN};
