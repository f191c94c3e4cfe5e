// SPDX-License-Identifier: GPL-2.0

//! Counting what an exporter handed out, to wait until it all came back.

use crate::{
    new_condvar, new_mutex,
    prelude::*,
    sync::{Arc, CondVar, Mutex},
};

/// What the leases of an exporter's memory share: how many are out, and the generation of the
/// memory (which [`Leases::renew`] starts anew when the memory is handed out again).
struct Count {
    out: usize,
    generation: u64,
}

/// The leases of memory an exporter hands out as lists or tables and may take back.
///
/// Each list or table gets a [`Lease`], which it drops when the importer gives it back; the
/// exporter takes its memory back with [`Leases::wait`], which returns once none is out.
#[pin_data]
pub(crate) struct Leases {
    #[pin]
    count: Mutex<Count>,
    #[pin]
    returned: CondVar,
}

impl Leases {
    /// Allocates the leases of new memory: none out.
    ///
    /// Not generic, unlike its callers: the lock class keys are statics of this function, and
    /// lockdep wants one name for each.
    pub(crate) fn new() -> Result<Arc<Self>> {
        Arc::pin_init(
            pin_init!(Self {
                count <- new_mutex!(Count { out: 0, generation: 0 }, "dma_buf_leases"),
                returned <- new_condvar!("dma_buf_leases"),
            }),
            GFP_KERNEL,
        )
    }

    /// Hands out a lease.
    pub(crate) fn take(self: &Arc<Self>) -> Lease {
        self.count.lock().out += 1;
        Lease(self.clone())
    }

    /// Returns the current generation, for [`Leases::wait`].
    pub(crate) fn generation(&self) -> u64 {
        self.count.lock().generation
    }

    /// Starts a new generation: the memory is handed out again after a revocation, and those
    /// still waiting for that revocation need not wait for the new leases.
    pub(crate) fn renew(&self) {
        self.count.lock().generation += 1;
        self.returned.notify_all();
    }

    /// Waits until no lease is out, or until the generation is no longer `generation`.
    pub(crate) fn wait(&self, generation: u64) {
        let mut count = self.count.lock();
        while count.out != 0 && count.generation == generation {
            self.returned.wait(&mut count);
        }
    }
}

/// A list or table handed out of memory counted by [`Leases`]; dropping it gives it back.
pub(crate) struct Lease(Arc<Leases>);

impl Drop for Lease {
    fn drop(&mut self) {
        let mut count = self.0.count.lock();
        count.out -= 1;
        if count.out == 0 {
            self.0.returned.notify_all();
        }
    }
}
