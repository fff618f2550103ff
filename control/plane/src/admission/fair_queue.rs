//! Fair admission of handshake work: one queue per source address, served round-robin.
//!
//! A source may keep at most its fair share of the backlog queued: the backlog divided among
//! the sources that have work waiting plus one more, so there is always room for a newcomer.
//! An initiation beyond that share is refused, and the caller answers it with a cookie reply
//! (or drops it if the source already proved its address with MAC2). So a flood from a few
//! addresses fills only its own queues, a client that sends one initiation is served within
//! one round, and a single busy source (a large NAT) may use half the backlog when nobody else
//! is waiting. Only when the whole backlog is full (very many sources) is everyone refused.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};

/// Who a source is, for fairness: an IPv4 address, or an IPv6 /64 (one host's usual share).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SourceKey {
    /// An IPv4 address.
    V4(u32),
    /// The first 64 bits of an IPv6 address.
    V6(u64),
}

impl SourceKey {
    /// The fairness key of a datagram's source.
    pub fn of(addr: SocketAddr) -> Self {
        match addr.ip() {
            IpAddr::V4(a) => SourceKey::V4(u32::from(a)),
            IpAddr::V6(a) => match a.to_ipv4_mapped() {
                Some(v4) => SourceKey::V4(u32::from(v4)),
                None => SourceKey::V6((u128::from(a) >> 64) as u64),
            },
        }
    }
}

/// Why an item was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The source already has its share of the backlog waiting.
    OverShare,
    /// The whole backlog is full.
    Overflow,
}

/// Per-source queues served round-robin, with a bound on the total backlog.
pub struct FairQueue<T> {
    queues: HashMap<SourceKey, VecDeque<T>>,
    /// Sources with work waiting, in service order.
    order: VecDeque<SourceKey>,
    len: usize,
    capacity: usize,
}

impl<T> FairQueue<T> {
    /// A queue holding at most `capacity` items in all.
    pub fn new(capacity: usize) -> Self {
        Self {
            queues: HashMap::new(),
            order: VecDeque::new(),
            len: 0,
            capacity: capacity.max(1),
        }
    }

    /// Items waiting.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True if nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// How many items one source may have waiting now.
    fn share(&self, source: SourceKey) -> usize {
        let waiting = self.order.len() + usize::from(!self.queues.contains_key(&source));
        (self.capacity / (waiting + 1)).max(1)
    }

    /// Queues `item` from `source`, or says why not (and gives it back).
    pub fn offer(&mut self, source: SourceKey, item: T) -> Result<(), (Refusal, T)> {
        if self.len >= self.capacity {
            return Err((Refusal::Overflow, item));
        }
        let share = self.share(source);
        let queue = self.queues.entry(source).or_default();
        if queue.len() >= share {
            return Err((Refusal::OverShare, item));
        }
        if queue.is_empty() {
            self.order.push_back(source);
        }
        queue.push_back(item);
        self.len += 1;
        Ok(())
    }

    /// The next item: the oldest of the source whose turn it is.
    pub fn pop(&mut self) -> Option<T> {
        let source = self.order.pop_front()?;
        let queue = self.queues.get_mut(&source)?;
        let item = queue.pop_front();
        if queue.is_empty() {
            self.queues.remove(&source);
        } else {
            self.order.push_back(source);
        }
        if item.is_some() {
            self.len -= 1;
        }
        item
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(n: u8) -> SourceKey {
        SourceKey::of(SocketAddr::from(([10, 0, 0, n], 1000)))
    }

    #[test]
    fn a_lone_source_may_use_half_the_backlog_and_many_sources_all_of_it() {
        let mut q = FairQueue::new(100);
        for i in 0..50 {
            assert!(q.offer(src(1), i).is_ok(), "item {i}");
        }
        assert_eq!(q.offer(src(1), 50), Err((Refusal::OverShare, 50)));
        assert_eq!(q.len(), 50);
        let mut q = FairQueue::new(100);
        for n in 0..100 {
            q.offer(src(n), u32::from(n)).expect("one each");
        }
        assert_eq!(q.offer(src(200), 7), Err((Refusal::Overflow, 7)));
    }

    #[test]
    fn a_flooding_source_is_held_to_its_share_and_others_are_served_each_round() {
        let mut q = FairQueue::new(100);
        let mut refused = 0;
        // Two flooders fill what they may.
        for i in 0..1000 {
            if q.offer(src(1 + (i % 2) as u8), i).is_err() {
                refused += 1;
            }
        }
        assert!(refused > 0);
        // A newcomer still gets in, and is served within one round of the sources waiting.
        assert!(q.offer(src(9), 5000).is_ok());
        let served: Vec<u32> = (0..3).filter_map(|_| q.pop()).collect();
        assert!(served.contains(&5000), "served {served:?}");
        // Each flooder holds a third (two waiting plus room for one more).
        assert_eq!(q.share(src(1)), 100 / 3);
        assert!(q.len() <= 2 * (100 / 3));
    }

    #[test]
    fn sources_are_served_in_turn_and_queues_vanish_when_empty() {
        let mut q = FairQueue::new(10);
        q.offer(src(1), 1).expect("1");
        q.offer(src(1), 2).expect("2");
        q.offer(src(2), 3).expect("3");
        assert_eq!(
            (q.pop(), q.pop(), q.pop(), q.pop()),
            (Some(1), Some(3), Some(2), None)
        );
        assert!(q.is_empty() && q.queues.is_empty() && q.order.is_empty());
    }

    #[test]
    fn ipv6_sources_are_grouped_by_their_64_bit_prefix() {
        let a: SocketAddr = "[2001:db8:1:2::1]:1".parse().expect("addr");
        let b: SocketAddr = "[2001:db8:1:2:ffff::9]:2".parse().expect("addr");
        let c: SocketAddr = "[2001:db8:1:3::1]:1".parse().expect("addr");
        assert_eq!(SourceKey::of(a), SourceKey::of(b));
        assert_ne!(SourceKey::of(a), SourceKey::of(c));
        let mapped: SocketAddr = "[::ffff:10.0.0.1]:1000".parse().expect("addr");
        assert_eq!(SourceKey::of(mapped), src(1));
    }
}
