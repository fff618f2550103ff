//! Receiver indices: random 32-bit numbers whose top bits name the worker that owns the
//! session, unique while in use. The control plane hands them out; workers report when a
//! session's index is retired. Each is counted into the workers' shared live-index filter
//! while in use, so a worker hands over only packets whose index may be live.

use std::collections::HashMap;
use std::sync::Arc;

use datapath::live_indices::LiveIndices;
use datapath::messages::INDEX_WORKER_SHIFT;
use datapath::route::PeerId;
use rand_core::RngCore;

/// What an index is used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexUse {
    /// Our initiation to this peer awaits its response.
    Pending(PeerId),
    /// A session of this peer lives in a worker.
    Session(PeerId),
}

/// The indices in use.
pub struct Indices {
    map: HashMap<u32, IndexUse>,
    live: Arc<LiveIndices>,
}

impl Indices {
    /// No index in use; `live` is the workers' filter to keep.
    pub fn new(live: Arc<LiveIndices>) -> Self {
        Self {
            map: HashMap::new(),
            live,
        }
    }

    /// A fresh index owned by worker `owner`.
    pub fn allocate(&mut self, owner: usize, what: IndexUse, rng: &mut impl RngCore) -> u32 {
        let low_mask = (1u32 << INDEX_WORKER_SHIFT) - 1;
        loop {
            let index = ((owner as u32) << INDEX_WORKER_SHIFT) | (rng.next_u32() & low_mask);
            if let std::collections::hash_map::Entry::Vacant(e) = self.map.entry(index) {
                e.insert(what);
                self.live.insert(index);
                return index;
            }
        }
    }

    /// What `index` is used for.
    pub fn get(&self, index: u32) -> Option<IndexUse> {
        self.map.get(&index).copied()
    }

    /// Changes what `index` is used for.
    pub fn set(&mut self, index: u32, what: IndexUse) {
        // Only an index in use changes use: one not handed out is not in the workers'
        // filter, and must not enter the map without it.
        if let Some(used) = self.map.get_mut(&index) {
            *used = what;
        }
    }

    /// Frees `index`.
    pub fn free(&mut self, index: u32) {
        if self.map.remove(&index).is_some() {
            self.live.remove(index);
        }
    }

    /// Number of indices in use.
    pub fn len(&self) -> usize {
        self.map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datapath::messages::index_owner;

    #[test]
    fn indices_name_their_owner_and_are_unique() {
        let mut rng = rand_core::OsRng;
        let live = Arc::new(LiveIndices::default());
        let mut ix = Indices::new(live.clone());
        let mut seen = std::collections::HashSet::new();
        for i in 0..2000 {
            let owner = i % 3;
            let index = ix.allocate(owner, IndexUse::Pending(0), &mut rng);
            assert_eq!(index_owner(index), owner);
            assert!(seen.insert(index));
        }
        assert_eq!(ix.len(), 2000);
        // The workers' filter follows: in use while allocated, gone once freed.
        let some: Vec<u32> = seen.iter().copied().take(10).collect();
        assert!(some.iter().all(|&i| live.may_contain(i)));
        for &i in &seen {
            ix.free(i);
        }
        assert!(some.iter().all(|&i| !live.may_contain(i)));
    }
}
