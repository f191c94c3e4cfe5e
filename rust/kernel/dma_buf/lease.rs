// SPDX-License-Identifier: GPL-2.0

//! Counting what an exporter handed out, to wait until it all came back.

use crate::{
    new_condvar, new_mutex,
    prelude::*,
    sync::{Arc, CondVar, Mutex},
};

/// What the leases of an exporter's memory share: how many are out, and how many revocations
/// that took the memory away still wait for the importers.
struct Count {
    out: usize,
    revoking: usize,
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
                count <- new_mutex!(Count { out: 0, revoking: 0 }, "dma_buf_leases"),
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

    /// Notes a revocation that took the memory away and is to wait for the importers.
    pub(crate) fn begin_revoke(&self) {
        self.count.lock().revoking += 1;
    }

    /// Ends a revocation noted with [`Leases::begin_revoke`], once it waited.
    pub(crate) fn end_revoke(&self) {
        let mut count = self.count.lock();
        count.revoking -= 1;
        if count.revoking == 0 {
            self.returned.notify_all();
        }
    }

    /// Waits until every revocation noted with [`Leases::begin_revoke`] ended.
    pub(crate) fn wait_revokes(&self) {
        let mut count = self.count.lock();
        while count.revoking != 0 {
            self.returned.wait(&mut count);
        }
    }

    /// Waits until no lease is out.
    ///
    /// Leases taken meanwhile are waited for too: the caller makes sure that none is (it took the
    /// memory away), or serialises handing the memory out again with the wait.
    pub(crate) fn wait(&self) {
        let mut count = self.count.lock();
        while count.out != 0 {
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
