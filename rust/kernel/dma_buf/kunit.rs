// SPDX-License-Identifier: GPL-2.0

//! KUnit tests of the dma-buf abstractions.
//!
//! A Rust test exporter with a configurable offer of mapping types, and Rust test importers, on
//! faux devices. The abstractions have no PAL importer (the C core gives physical addresses to
//! iommufd only), so PAL exports are imported here the way iommufd does it, through the C calls.
//! Most tests check at the end, with [`Ctx::finish`], that the exporter saw as many detaches as
//! attaches and unmaps as maps, and that the buffer and the attachments' data were released,
//! i.e. nothing leaked; the others count what they expect themselves.
//!
//! The helpers outside the test functions never panic: they return errors or values that the
//! tests check, so that a failure fails the test instead of the kernel.

#[macros::kunit_tests(rust_dma_buf)]
mod tests {
    use crate::{
        bindings,
        device::{Bound, Device},
        dma::DataDirection,
        dma_buf::*,
        faux,
        fs::file::{
            flags::{O_ACCMODE, O_CLOEXEC, O_RDONLY},
            FileDescriptorReservation,
        },
        io::PhysAddr,
        page::{Page, PAGE_SIZE},
        prelude::*,
        str::CString,
        sync::{
            aref::ARef,
            atomic::{Atomic, Relaxed},
            Arc, ArcBorrow,
        },
        types::Opaque,
    };
    use core::ptr::NonNull;

    const NR_PAGES: usize = 3;
    const SIZE: usize = NR_PAGES * PAGE_SIZE;
    /// Where the fake physical ranges of the test exporter start; never accessed.
    const FAKE_PHYS: PhysAddr = 0x1_0000_0000;

    /// The offers of the test exporters, indexed by their const parameter.
    const SGT: usize = 0;
    const PAL: usize = 1;
    const PAL_SGT: usize = 2;
    const SGT_PAL: usize = 3;
    const SGT_P2P: usize = 4;
    const OFFERS: [&[ExportType]; 5] = [
        &[ExportType::Sgt { p2p: false }],
        &[ExportType::Pal],
        &[ExportType::Pal, ExportType::Sgt { p2p: false }],
        &[ExportType::Sgt { p2p: false }, ExportType::Pal],
        &[ExportType::Sgt { p2p: true }],
    ];

    /// What the test exporter saw; outlives the buffer.
    struct Counters {
        attach: Atomic<i32>,
        detach: Atomic<i32>,
        attach_data_dropped: Atomic<i32>,
        maps: Atomic<i32>,
        live_maps: Atomic<i32>,
        cpu_access: Atomic<i32>,
        released: Atomic<i32>,
        /// The device of the last SGT map.
        last_dev: Atomic<usize>,
        /// The reference count of the device of the last detach, read in the detach callback.
        detach_dev_refs: Atomic<u32>,
    }

    impl Counters {
        fn map(&self) {
            self.maps.fetch_add(1, Relaxed);
            self.live_maps.fetch_add(1, Relaxed);
        }

        fn unmap(&self) {
            self.live_maps.fetch_sub(1, Relaxed);
        }
    }

    /// What is left over after a test, see [`Ctx::finish`].
    #[derive(Debug, PartialEq)]
    struct Leftovers {
        unreleased: i32,
        live_maps: i32,
        attached: i32,
        attach_data: i32,
    }

    const NOTHING: Leftovers = Leftovers {
        unreleased: 0,
        live_maps: 0,
        attached: 0,
        attach_data: 0,
    };

    /// The exporter data of a test buffer.
    struct TestBuf {
        pages: Arc<KVec<Page>>,
        provider: Opaque<bindings::p2pdma_provider>,
        counters: Arc<Counters>,
        revoked: Atomic<i32>,
        fail_attach: bool,
        refuse_pinned: bool,
        /// Invalidate every mapping of the buffer from inside `map_sgt`.
        invalidate_in_map: bool,
        /// Hand out tables DMA mapped for the importer, not the page table alone.
        dma_map: bool,
    }

    // SAFETY: The provider is plain data that is only read after the export.
    unsafe impl Send for TestBuf {}
    // SAFETY: The provider is plain data that is only read after the export.
    unsafe impl Sync for TestBuf {}

    impl Drop for TestBuf {
        fn drop(&mut self) {
            self.counters.released.fetch_add(1, Relaxed);
        }
    }

    /// The exporter data of a test attachment: counts its drop.
    struct TestAttach {
        counters: Arc<Counters>,
    }

    impl Drop for TestAttach {
        fn drop(&mut self) {
            self.counters.attach_data_dropped.fetch_add(1, Relaxed);
        }
    }

    fn sgt_export<'a, T: Exporter>(
        data: &TestBuf,
        attach: &'a ExporterAttachment<T>,
        dir: DataDirection,
    ) -> Result<SgtExport<'a>> {
        if data.revoked.load(Relaxed) != 0 {
            return Err(ENODEV);
        }
        let sgt = if data.dma_map {
            SgtExport::from_pages(attach, &data.pages, dir)?
        } else {
            // UML has no DMA: hand out the page table without mapping it.
            SgtExport::from_pages_unmapped(attach, &data.pages, dir)?
        };
        data.counters
            .last_dev
            .store(attach.dev().as_raw() as usize, Relaxed);
        if data.invalidate_in_map {
            // As exporters that move the buffer to map it do.
            // SAFETY: The buffer is valid, and the importer holds its lock while it maps.
            unsafe { bindings::dma_buf_invalidate_mappings(attach.buf().as_raw()) };
        }
        data.counters.map();
        Ok(sgt)
    }

    struct TestExporter<const OFFER: usize>;

    #[vtable]
    impl<const OFFER: usize> Exporter for TestExporter<OFFER> {
        type Data = Arc<TestBuf>;
        type AttachData = KBox<TestAttach>;
        const MAPPING_TYPES: &'static [ExportType] = OFFERS[OFFER];

        fn attach(
            data: ArcBorrow<'_, TestBuf>,
            attach: &ExporterAttachment<Self>,
        ) -> Result<KBox<TestAttach>> {
            if data.fail_attach {
                return Err(EPERM);
            }
            if !attach.is_revocable() && data.refuse_pinned {
                return Err(EOPNOTSUPP);
            }
            if attach.buf().size() != SIZE || attach.data().is_some() {
                return Err(ENOTRECOVERABLE);
            }
            data.counters.attach.fetch_add(1, Relaxed);
            Ok(KBox::new(
                TestAttach {
                    counters: data.counters.clone(),
                },
                GFP_KERNEL,
            )?)
        }

        fn detach(data: ArcBorrow<'_, TestBuf>, attach: &ExporterAttachment<Self>) {
            // The attachment's data is still there.
            if attach.data().is_some() {
                data.counters.detach.fetch_add(1, Relaxed);
            }
            // Under KASAN, a device freed before its attachments shows up here.
            data.counters
                .detach_dev_refs
                .store(dev_refs(attach.dev()), Relaxed);
        }

        fn map_sgt<'a>(
            data: ArcBorrow<'_, TestBuf>,
            attach: &'a ExporterAttachment<Self>,
            dir: DataDirection,
        ) -> Result<SgtExport<'a>> {
            // The attachment's data is there from the attach on.
            attach.data().ok_or(ENOTRECOVERABLE)?;
            sgt_export(&data, attach, dir)
        }

        fn unmap_sgt(
            data: ArcBorrow<'_, TestBuf>,
            _attach: &ExporterAttachment<Self>,
            sgt: SgtExport<'_>,
        ) {
            drop(sgt);
            data.counters.unmap();
        }

        fn map_pal(
            data: ArcBorrow<'_, TestBuf>,
            attach: &ExporterAttachment<Self>,
        ) -> Result<PalExport> {
            if !attach.is_type::<Pal>() {
                return Err(ENOTRECOVERABLE);
            }
            if data.revoked.load(Relaxed) != 0 {
                return Err(ENODEV);
            }
            let ranges = [
                PhysRange::new(FAKE_PHYS, PAGE_SIZE),
                PhysRange::new(FAKE_PHYS + 4 * PAGE_SIZE as u64, 2 * PAGE_SIZE),
            ];
            // SAFETY: The test provider lives as long as the buffer, which outlives its
            // mappings, and the test importer never accesses the (fake) ranges.
            let phys =
                unsafe { PalExport::new(P2pProvider::from_raw(data.provider.get()), &ranges) }?;
            data.counters.map();
            Ok(phys)
        }

        fn unmap_pal(
            data: ArcBorrow<'_, TestBuf>,
            _attach: &ExporterAttachment<Self>,
            phys: PalExport,
        ) {
            drop(phys);
            data.counters.unmap();
        }

        fn begin_cpu_access(
            data: ArcBorrow<'_, TestBuf>,
            buf: &Exported<Self>,
            _dir: DataDirection,
        ) -> Result {
            if buf.size() != SIZE {
                return Err(ENOTRECOVERABLE);
            }
            data.counters.cpu_access.fetch_add(1, Relaxed);
            Ok(())
        }
    }

    /// An exporter with neither attach data nor unmap callbacks: the abstraction drops what the
    /// importer gives back.
    struct PlainExporter;

    #[vtable]
    impl Exporter for PlainExporter {
        type Data = Arc<TestBuf>;
        type AttachData = ();
        const MAPPING_TYPES: &'static [ExportType] = &[ExportType::Sgt { p2p: false }];

        fn map_sgt<'a>(
            data: ArcBorrow<'_, TestBuf>,
            attach: &'a ExporterAttachment<Self>,
            dir: DataDirection,
        ) -> Result<SgtExport<'a>> {
            if attach.data().is_some() {
                return Err(ENOTRECOVERABLE);
            }
            sgt_export(&data, attach, dir)
        }
    }

    /// The test importer: counts invalidations, what they saw, and its own drop.
    struct TestImporter {
        invalidated: Arc<Atomic<i32>>,
        /// Invalidations that came with the lock held and a mapping to give back.
        with_mapping: Arc<Atomic<i32>>,
        dropped: Arc<Atomic<i32>>,
    }

    impl Drop for TestImporter {
        fn drop(&mut self) {
            self.dropped.fetch_add(1, Relaxed);
        }
    }

    impl Importer for TestImporter {
        fn invalidate(&self, inv: &Invalidation<'_>) {
            self.invalidated.fetch_add(1, Relaxed);
            // The lock is held (by this task, which ran the invalidation).
            let locked = inv.resv().resv().try_lock().is_none();
            if locked && inv.sgt().is_some_and(|sgt| sgt.iter().count() > 0) {
                self.with_mapping.fetch_add(1, Relaxed);
            }
        }
    }

    /// One test: a faux device, its counters, and the buffers it exports.
    struct Ctx {
        dev: faux::Registration,
        counters: Arc<Counters>,
        invalidated: Arc<Atomic<i32>>,
        with_mapping: Arc<Atomic<i32>>,
        importers_dropped: Arc<Atomic<i32>>,
    }

    /// Registers a faux device with a name of its own.
    fn faux_dev() -> Result<faux::Registration> {
        // A test that fails an assertion leaks its device: give each its own name.
        static SERIAL: Atomic<i32> = Atomic::new(0);
        let name =
            CString::try_from_fmt(fmt!("rust-dma-buf-test-{}", SERIAL.fetch_add(1, Relaxed)))?;
        faux::Registration::new(&name, None)
    }

    /// Flushes the releases of files dropped by this kernel thread.
    fn flush_fput() {
        // The last reference of a buffer is a file, which kernel threads release from a work
        // item.
        // SAFETY: Flushing delayed file releases has no requirements.
        unsafe { bindings::flush_delayed_fput() };
    }

    impl Ctx {
        fn new() -> Result<Self> {
            Ok(Self {
                dev: faux_dev()?,
                counters: Arc::new(
                    Counters {
                        attach: Atomic::new(0),
                        detach: Atomic::new(0),
                        attach_data_dropped: Atomic::new(0),
                        maps: Atomic::new(0),
                        live_maps: Atomic::new(0),
                        cpu_access: Atomic::new(0),
                        released: Atomic::new(0),
                        last_dev: Atomic::new(0),
                        detach_dev_refs: Atomic::new(0),
                    },
                    GFP_KERNEL,
                )?,
                invalidated: Arc::new(Atomic::new(0), GFP_KERNEL)?,
                with_mapping: Arc::new(Atomic::new(0), GFP_KERNEL)?,
                importers_dropped: Arc::new(Atomic::new(0), GFP_KERNEL)?,
            })
        }

        fn dev(&self) -> &Device<Bound> {
            self.dev.as_ref().as_ref()
        }

        /// Makes the exporter data of a test buffer.
        fn data(&self, fail_attach: bool, dma_map: bool) -> Result<Arc<TestBuf>> {
            Ok(Arc::new(self.data_raw(fail_attach, dma_map)?, GFP_KERNEL)?)
        }

        /// Makes the exporter data of a test buffer, to be adjusted by the test.
        fn data_raw(&self, fail_attach: bool, dma_map: bool) -> Result<TestBuf> {
            let mut pages = KVec::with_capacity(NR_PAGES, GFP_KERNEL)?;
            for _ in 0..NR_PAGES {
                pages.push(Page::alloc_page(GFP_KERNEL)?, GFP_KERNEL)?;
            }
            self.data_of(pages, fail_attach, dma_map)
        }

        /// Makes the exporter data of a test buffer of `pages`.
        fn data_of(&self, pages: KVec<Page>, fail_attach: bool, dma_map: bool) -> Result<TestBuf> {
            let data = TestBuf {
                pages: Arc::new(pages, GFP_KERNEL)?,
                provider: Opaque::new(pin_init::zeroed()),
                counters: self.counters.clone(),
                revoked: Atomic::new(0),
                fail_attach,
                refuse_pinned: false,
                invalidate_in_map: false,
                dma_map,
            };
            // SAFETY: The provider is ours and not shared yet.
            unsafe { (*data.provider.get()).owner = self.dev().as_raw() };
            Ok(data)
        }

        /// Exports a buffer of the offer `OFFER`.
        fn export_with<const OFFER: usize>(
            &self,
            data: Arc<TestBuf>,
            size: usize,
            opts: ExportOptions,
        ) -> Result<ARef<Exported<TestExporter<OFFER>>>> {
            DmaBuf::export_with::<TestExporter<OFFER>>(data, size, opts)
        }

        fn export<const OFFER: usize>(
            &self,
            fail_attach: bool,
        ) -> Result<ARef<Exported<TestExporter<OFFER>>>> {
            self.export_with::<OFFER>(self.data(fail_attach, false)?, SIZE, ExportOptions::new())
        }

        fn importer(&self) -> TestImporter {
            TestImporter {
                invalidated: self.invalidated.clone(),
                with_mapping: self.with_mapping.clone(),
                dropped: self.importers_dropped.clone(),
            }
        }

        fn attach(&self, buf: &DmaBuf, types: &[ImportType]) -> Result<Negotiated<TestImporter>> {
            buf.attach(self.dev(), types, self.importer())
        }

        /// Attaches an SGT importer and returns its attachment.
        fn attach_sgt(&self, buf: &DmaBuf) -> Result<Attachment<Sgt, TestImporter>> {
            match self.attach(buf, &[self.sgt()])? {
                Negotiated::Sgt(att) => Ok(att),
            }
        }

        fn sgt(&self) -> ImportType {
            ImportType::Sgt { p2p: false }
        }

        /// Drops `buf` and returns what is left over: [`NOTHING`] unless something leaked.
        fn finish<T: Exporter>(&self, buf: ARef<Exported<T>>) -> Leftovers {
            drop(buf);
            flush_fput();
            let c = &self.counters;
            Leftovers {
                unreleased: 1 - c.released.load(Relaxed),
                live_maps: c.live_maps.load(Relaxed),
                attached: c.attach.load(Relaxed) - c.detach.load(Relaxed),
                attach_data: c.attach.load(Relaxed) - c.attach_data_dropped.load(Relaxed),
            }
        }
    }

    /// Allocates `NR_PAGES` physically contiguous pages, in order, or returns [`ENOMEM`].
    ///
    /// Picks them from a batch of single pages, which the page allocator hands out from larger
    /// blocks, so that a scatter-gather table can merge them into one entry.
    fn contiguous_pages() -> Result<KVec<Page>> {
        const BATCH: usize = 64;
        let mut batch = KVec::with_capacity(BATCH, GFP_KERNEL)?;
        for _ in 0..BATCH {
            batch.push(Page::alloc_page(GFP_KERNEL)?, GFP_KERNEL)?;
        }
        // The `struct page`s of contiguous memory are adjacent too.
        batch.sort_unstable_by_key(|page| page.as_ptr() as usize);
        let start = (0..=BATCH - NR_PAGES)
            .find(|&i| {
                (1..NR_PAGES).all(|j| batch[i + j].as_ptr() == batch[i].as_ptr().wrapping_add(j))
            })
            .ok_or(ENOMEM)?;
        batch.truncate(start + NR_PAGES);
        let mut pages = KVec::with_capacity(NR_PAGES, GFP_KERNEL)?;
        for page in batch.drain_all().skip(start) {
            pages.push(page, GFP_KERNEL)?;
        }
        Ok(pages)
    }

    /// Returns the reference count of `dev`.
    fn dev_refs(dev: &Device) -> u32 {
        // SAFETY: `dev` is a valid device; reading its reference count has no requirements.
        unsafe { (*dev.as_raw()).kobj.kref.refcount.refs.counter as u32 }
    }

    /// A PAL import done the way iommufd does it, with the core's C functions, which are not
    /// exported to modules other than iommufd. Counts invalidations in `invalidated`.
    ///
    /// # Invariants
    ///
    /// `raw` is a live attachment of `buf` from `dma_buf_pal_attach()`, with `_invalidated` as
    /// its importer data; it is detached only in `drop`.
    struct PalImport {
        raw: NonNull<bindings::dma_buf_attachment>,
        buf: ARef<DmaBuf>,
        _invalidated: Arc<Atomic<i32>>,
    }

    /// # Safety
    ///
    /// `attach` is an attachment made by [`PalImport::new`] and not detached yet.
    unsafe extern "C" fn pal_invalidate(attach: *mut bindings::dma_buf_attachment) {
        // SAFETY: By the safety requirements, `importer_priv` is the counter of a `PalImport`,
        // which keeps it alive until after the detach.
        let invalidated = unsafe { &*(*attach).importer_priv.cast::<Atomic<i32>>() };
        invalidated.fetch_add(1, Relaxed);
    }

    static PAL_IMPORTER_OPS: bindings::dma_buf_attach_ops = bindings::dma_buf_attach_ops {
        allow_peer2peer: false,
        invalidate_mappings: Some(pal_invalidate),
    };

    impl PalImport {
        fn new(buf: &DmaBuf, dev: &Device<Bound>, invalidated: Arc<Atomic<i32>>) -> Result<Self> {
            let priv_: *const Atomic<i32> = &*invalidated;
            // SAFETY: `buf` and `dev` are valid. `PAL_IMPORTER_OPS` is a static, and its
            // callback takes `importer_priv` for the `Atomic<i32>` that `priv_` points to, which
            // outlives the attachment: the `PalImport` holds a reference to it until after the
            // detach.
            let raw = crate::error::from_err_ptr(unsafe {
                bindings::dma_buf_pal_attach(
                    buf.as_raw(),
                    dev.as_raw(),
                    &PAL_IMPORTER_OPS,
                    priv_.cast_mut().cast(),
                )
            })?;
            // INVARIANT: `raw` was just attached to `buf` with `invalidated` as importer data.
            Ok(Self {
                raw: NonNull::new(raw).ok_or(EINVAL)?,
                buf: buf.into(),
                _invalidated: invalidated,
            })
        }

        /// Maps the attachment under `resv`, calls `f` with the ranges and the provider's
        /// owner while they are mapped, and unmaps them again.
        ///
        /// Returns [`EINVAL`] if `resv` holds the lock of another buffer.
        fn map<R>(
            &self,
            resv: &DmaResvGuard<'_>,
            f: impl FnOnce(&[PhysRange], *mut bindings::device) -> R,
        ) -> Result<R> {
            if !resv.holds(self.buf.resv()) {
                return Err(EINVAL);
            }
            // SAFETY: By the type invariants, `raw` is a live PAL attachment, and `resv` holds
            // the reservation lock of its buffer.
            let phys = crate::error::from_err_ptr(unsafe {
                bindings::dma_buf_pal_map(self.raw.as_ptr())
            })?;
            // SAFETY: `phys` is a list `dma_buf_pal_map()` returned and checked, with `nr_ranges`
            // ranges that are not written to until it is given back below. `PhysRange` is
            // `repr(transparent)` over `struct phys_vec`.
            let ranges = unsafe {
                core::slice::from_raw_parts(
                    (&raw const (*phys).ranges).cast::<PhysRange>(),
                    (*phys).nr_ranges,
                )
            };
            // SAFETY: The core checked that the provider is not NULL; by the exporter's contract
            // (`PalExport::new`) it is valid until the list is given back below.
            let owner = unsafe { (*(*phys).provider).owner };
            let res = f(ranges, owner);
            // SAFETY: `phys` was mapped above from this attachment, the lock is still held, and
            // nothing borrowed from it is left.
            unsafe { bindings::dma_buf_pal_unmap(self.raw.as_ptr(), phys) };
            Ok(res)
        }
    }

    impl Drop for PalImport {
        fn drop(&mut self) {
            // SAFETY: By the type invariants, `raw` is a live attachment of `buf`, with no
            // mapping left (`map` unmaps before it returns).
            unsafe { bindings::dma_buf_detach(self.buf.as_raw(), self.raw.as_ptr()) };
        }
    }

    /// The outcome of one negotiation: the type name and the number of exporter attaches, or
    /// the error, and what was left over.
    type Outcome = (Result<(&'static str, i32)>, Leftovers);

    /// Negotiates a Rust SGT importer (`b's'`) or a PAL import (`b'p'`) against the offer
    /// `OFFER`.
    fn negotiate<const OFFER: usize>(imp: u8) -> Result<Outcome> {
        let ctx = Ctx::new()?;
        let buf = ctx.export::<OFFER>(false)?;
        let res = if imp == b's' {
            ctx.attach(&buf, &[ctx.sgt()]).map(|n| n.type_name())
        } else {
            PalImport::new(&buf, ctx.dev(), ctx.invalidated.clone()).map(|_| Pal::NAME)
        };
        let left = ctx.finish(buf);
        Ok((
            res.map(|name| (name, ctx.counters.attach.load(Relaxed))),
            left,
        ))
    }

    /// A fence of the tests, which signals as soon as somebody waits for it if `auto`.
    #[repr(C)]
    struct TestFence {
        fence: Opaque<bindings::dma_fence>,
        auto: bool,
        waits: Atomic<i32>,
    }

    /// # Safety
    ///
    /// `fence` is a [`TestFence`].
    unsafe extern "C" fn fence_name(_fence: *mut bindings::dma_fence) -> *const c_char {
        c"rust_dma_buf_test".as_ptr().cast()
    }

    /// # Safety
    ///
    /// `fence` is the first field of a live [`TestFence`].
    unsafe extern "C" fn fence_enable_signaling(fence: *mut bindings::dma_fence) -> bool {
        // SAFETY: By the safety requirements.
        let test = unsafe { &*fence.cast::<TestFence>() };
        test.waits.fetch_add(1, Relaxed);
        // `false` tells the core that the fence has signaled.
        !test.auto
    }

    static FENCE_OPS: bindings::dma_fence_ops = bindings::dma_fence_ops {
        get_driver_name: Some(fence_name),
        get_timeline_name: Some(fence_name),
        enable_signaling: Some(fence_enable_signaling),
        ..pin_init::zeroed()
    };

    /// A reference to a [`TestFence`].
    ///
    /// # Invariants
    ///
    /// `ptr` points to an initialized fence with [`FENCE_OPS`], of which this holds a reference.
    struct FenceRef {
        ptr: NonNull<TestFence>,
    }

    impl FenceRef {
        fn new(auto: bool) -> Result<Self> {
            let fence = KBox::new(
                TestFence {
                    fence: Opaque::uninit(),
                    auto,
                    waits: Atomic::new(0),
                },
                GFP_KERNEL,
            )?;
            let ptr = KBox::into_raw(fence);
            // SAFETY: `ptr` is a new fence, kmalloc'ed as the default release (`kfree_rcu()`)
            // needs; with a NULL lock the fence uses a lock of its own.
            unsafe {
                let context = bindings::dma_fence_context_alloc(1);
                bindings::dma_fence_init(
                    (*ptr).fence.get(),
                    &FENCE_OPS,
                    core::ptr::null_mut(),
                    context,
                    1,
                );
            }
            // INVARIANT: The fence was initialized with one reference, which is ours.
            Ok(Self {
                // SAFETY: `KBox::into_raw` does not return NULL.
                ptr: unsafe { NonNull::new_unchecked(ptr) },
            })
        }

        fn raw(&self) -> *mut bindings::dma_fence {
            // SAFETY: By the type invariants, the fence is alive.
            unsafe { (*self.ptr.as_ptr()).fence.get() }
        }

        fn waits(&self) -> i32 {
            // SAFETY: By the type invariants, the fence is alive.
            unsafe { (*self.ptr.as_ptr()).waits.load(Relaxed) }
        }

        fn is_signaled(&self) -> bool {
            // SAFETY: By the type invariants, the fence is alive.
            let flags = unsafe { (*self.raw()).flags };
            flags & (1 << bindings::dma_fence_flag_bits_DMA_FENCE_FLAG_SIGNALED_BIT) != 0
        }

        fn signal(&self) {
            // SAFETY: By the type invariants, the fence is alive.
            unsafe { bindings::dma_fence_signal(self.raw()) };
        }

        /// Adds the fence to `resv` with `usage`.
        fn add_to(&self, resv: &DmaResvGuard<'_>, usage: u32) -> Result {
            // SAFETY: The lock of `resv` is held, as both functions require; the fence is alive,
            // and `dma_resv_add_fence()` takes a reference of its own.
            unsafe {
                crate::error::to_result(bindings::dma_resv_reserve_fences(
                    resv.resv().as_raw(),
                    1,
                ))?;
                bindings::dma_resv_add_fence(resv.resv().as_raw(), self.raw(), usage);
            }
            Ok(())
        }
    }

    impl Drop for FenceRef {
        fn drop(&mut self) {
            // SAFETY: By the type invariants, this holds a reference, given up here.
            unsafe { bindings::dma_fence_put(self.raw()) };
        }
    }

    #[test]
    fn rust_dma_buf_export_fd_get() -> Result {
        let ctx = Ctx::new()?;
        let buf = ctx.export::<SGT>(false)?;
        assert_eq!(buf.size(), SIZE);

        let fd = buf.new_fd()?;
        let got = DmaBuf::get(fd)?;
        assert!(*got == **buf);
        assert_eq!(got.size(), SIZE);
        drop(got);

        // A reserved but empty slot is not an open file.
        let reserved = FileDescriptorReservation::get_unused_fd_flags(O_CLOEXEC)?;
        assert_eq!(DmaBuf::get(reserved.reserved_fd()).err(), Some(EBADF));
        drop(reserved);
        assert_eq!(DmaBuf::get(u32::MAX).err(), Some(EBADF));

        // SAFETY: `fd` is the descriptor installed above, not used afterwards.
        assert_eq!(unsafe { bindings::close_fd(fd) }, 0);
        assert_eq!(ctx.finish(buf), NOTHING);
        Ok(())
    }

    #[test]
    fn rust_dma_buf_export_options() -> Result {
        let ctx = Ctx::new()?;
        let shared = ctx.export::<SGT>(false)?;
        let opts = ExportOptions::new()
            .read_only()
            .shared_resv(ARef::<DmaBuf>::from(&**shared))?;
        let buf = ctx.export_with::<SGT>(ctx.data(false, false)?, SIZE, opts)?;
        assert!(buf.resv() == shared.resv());
        // SAFETY: The file of a live buffer is valid.
        let flags = unsafe { (*(*buf.as_raw()).file).f_flags };
        assert_eq!(flags & O_ACCMODE, O_RDONLY);

        // The lock of one is the lock of the other.
        let att = ctx.attach_sgt(&buf)?;
        {
            let mut resv = shared.lock();
            att.map(ctx.dev(), resv.locked(), DataDirection::ToDevice)?;
        }
        drop(att);

        // The buffer keeps the one whose object it shares.
        drop(shared);
        flush_fput();
        assert_eq!(ctx.counters.released.load(Relaxed), 0);
        drop(buf);
        flush_fput();
        assert_eq!(ctx.counters.released.load(Relaxed), 2);
        Ok(())
    }

    #[test]
    fn rust_dma_buf_export_size_zero() -> Result {
        let ctx = Ctx::new()?;
        let buf = ctx.export_with::<SGT>(ctx.data(false, false)?, 0, ExportOptions::new());
        assert_eq!(buf.err(), Some(EINVAL));
        // The exporter data of the failed export was dropped right away.
        assert_eq!(ctx.counters.released.load(Relaxed), 1);
        Ok(())
    }

    #[test]
    fn rust_dma_buf_weak() -> Result {
        let ctx = Ctx::new()?;
        let buf = ctx.export::<SGT>(false)?;
        let weak = buf.downgrade();
        let strong = weak.upgrade().ok_or(ENOENT)?;
        assert!(weak.is(&strong));
        assert!(strong.data().pages.len() == NR_PAGES);
        drop(strong);
        assert_eq!(ctx.finish(buf), NOTHING);
        // Once released, the buffer is not found any more.
        assert!(weak.upgrade().is_none());
        Ok(())
    }

    #[test]
    fn rust_dma_buf_negotiate() -> Result {
        // Each importer gets the one type it takes, wherever the exporter lists it.
        assert_eq!(negotiate::<SGT>(b's')?, (Ok(("sgt", 1)), NOTHING));
        assert_eq!(negotiate::<SGT>(b'p')?, (Err(EOPNOTSUPP), NOTHING));
        assert_eq!(negotiate::<PAL>(b'p')?, (Ok(("pal", 1)), NOTHING));
        assert_eq!(negotiate::<PAL>(b's')?, (Err(EOPNOTSUPP), NOTHING));
        assert_eq!(negotiate::<PAL_SGT>(b's')?, (Ok(("sgt", 1)), NOTHING));
        assert_eq!(negotiate::<PAL_SGT>(b'p')?, (Ok(("pal", 1)), NOTHING));
        assert_eq!(negotiate::<SGT_PAL>(b's')?, (Ok(("sgt", 1)), NOTHING));
        assert_eq!(negotiate::<SGT_PAL>(b'p')?, (Ok(("pal", 1)), NOTHING));
        // Peer-to-peer only buffers need peer-to-peer importers.
        assert_eq!(negotiate::<SGT_P2P>(b's')?, (Err(EOPNOTSUPP), NOTHING));
        Ok(())
    }

    #[test]
    fn rust_dma_buf_negotiate_p2p() -> Result {
        let ctx = Ctx::new()?;
        let buf = ctx.export::<SGT_P2P>(false)?;
        let p2p = ImportType::Sgt { p2p: true };
        let Negotiated::Sgt(att) = ctx.attach(&buf, &[p2p])?;
        assert!(att.peer2peer());
        drop(att);
        assert_eq!(ctx.attach(&buf, &[]).err(), Some(EINVAL));
        assert_eq!(ctx.finish(buf), NOTHING);
        Ok(())
    }

    #[test]
    fn rust_dma_buf_attach_error() -> Result {
        let ctx = Ctx::new()?;
        let buf = ctx.export::<SGT>(true)?;
        assert_eq!(ctx.attach(&buf, &[ctx.sgt()]).err(), Some(EPERM));
        // The importer data went away with the failed attach.
        assert_eq!(ctx.importers_dropped.load(Relaxed), 1);
        assert_eq!(ctx.finish(buf), NOTHING);
        assert_eq!(ctx.counters.attach.load(Relaxed), 0);
        Ok(())
    }

    #[test]
    fn rust_dma_buf_sgt_map() -> Result {
        let ctx = Ctx::new()?;
        let ctx2 = Ctx::new()?;
        let buf = ctx.export::<PAL_SGT>(false)?;
        let att = ctx.attach_sgt(&buf)?;
        // Results are checked after the lock is released: a failed assertion ends the test.
        let (mapped, no_dir, other_dev, maps) = {
            let mut resv = buf.lock();
            let mapped = att.is_mapped(resv.locked());
            // No direction is no mapping; only for the attachment's own device.
            let no_dir = att.map(ctx.dev(), resv.locked(), DataDirection::None).err();
            let other_dev = att
                .map(ctx2.dev(), resv.locked(), DataDirection::ToDevice)
                .err();
            let maps = ctx.counters.maps.load(Relaxed);
            att.map(ctx.dev(), resv.locked(), DataDirection::ToDevice)?;
            (mapped, no_dir, other_dev, maps)
        };
        assert_eq!(mapped, Ok(false));
        assert_eq!(no_dir, Some(EINVAL));
        assert_eq!(other_dev, Some(EINVAL));
        assert_eq!(maps, 0);
        // The mapping outlives the lock; mapping again returns it.
        assert_eq!(ctx.counters.live_maps.load(Relaxed), 1);
        let (kept, maps, other_dir, unmapped) = {
            let mut resv = buf.lock();
            let kept = att.mapping(resv.locked())?.is_some();
            att.map(ctx.dev(), resv.locked(), DataDirection::ToDevice)?;
            let maps = ctx.counters.maps.load(Relaxed);
            // One mapping per attachment: another direction needs an unmap first.
            let other_dir = att
                .map(ctx.dev(), resv.locked(), DataDirection::FromDevice)
                .err();
            att.unmap(resv.locked())?;
            let unmapped = ctx.counters.live_maps.load(Relaxed);
            att.map(ctx.dev(), resv.locked(), DataDirection::FromDevice)?;
            (kept, maps, other_dir, unmapped)
        };
        assert!(kept);
        assert_eq!(maps, 1);
        assert_eq!(other_dir, Some(EBUSY));
        assert_eq!(unmapped, 0);
        assert_eq!(ctx.counters.maps.load(Relaxed), 2);

        // The lock of another buffer is not the lock of this one.
        let other = ctx2.export::<SGT>(false)?;
        let (map, unmap) = {
            let mut resv = other.lock();
            let map = att
                .map(ctx.dev(), resv.locked(), DataDirection::ToDevice)
                .err();
            (map, att.unmap(resv.locked()))
        };
        assert_eq!(map, Some(EINVAL));
        assert_eq!(unmap, Err(EINVAL));
        assert_eq!(ctx2.finish(other), NOTHING);
        assert_eq!(ctx.counters.live_maps.load(Relaxed), 1);
        // Dropping the attachment unmaps and detaches.
        drop(att);
        assert_eq!(ctx.counters.live_maps.load(Relaxed), 0);
        assert_eq!(ctx.invalidated.load(Relaxed), 0);
        assert_eq!(ctx.finish(buf), NOTHING);
        assert_eq!(ctx.counters.attach.load(Relaxed), 1);
        Ok(())
    }

    /// The default unmap path: without `unmap_sgt`, the abstraction drops the table, and with it
    /// its reference to the pages.
    #[test]
    fn rust_dma_buf_default_unmap() -> Result {
        let ctx = Ctx::new()?;
        let data = ctx.data(false, false)?;
        let pages = data.pages.clone();
        let buf = DmaBuf::export::<PlainExporter>(data, SIZE)?;
        let att = ctx.attach_sgt(&buf)?;
        for _ in 0..3 {
            let mut resv = buf.lock();
            att.map(ctx.dev(), resv.locked(), DataDirection::ToDevice)?;
            att.unmap(resv.locked())?;
        }
        {
            let mut resv = buf.lock();
            att.map(ctx.dev(), resv.locked(), DataDirection::ToDevice)?;
        }
        drop(att);
        assert_eq!(ctx.counters.maps.load(Relaxed), 4);
        drop(buf);
        flush_fput();
        assert_eq!(ctx.counters.released.load(Relaxed), 1);
        // No table is left holding the pages.
        assert!(Arc::into_unique_or_drop(pages).is_some());
        Ok(())
    }

    /// The attachment keeps its device alive. An importer that drops its device before its
    /// attachment (which it must not: mappings are for a bound device) leaves the device
    /// unregistered but not freed. Counted in UML; under KASAN, a freed device would show up in
    /// the exporter's detach, which reads it.
    #[test]
    fn rust_dma_buf_dev_kept() -> Result {
        let ctx = Ctx::new()?;
        let reg = faux_dev()?;
        let dev: &Device<Bound> = reg.as_ref().as_ref();
        let raw = dev.as_raw();
        let before = dev_refs(dev);

        let buf = ctx.export::<SGT>(false)?;
        let Negotiated::Sgt(att) = buf.attach(dev, &[ctx.sgt()], ctx.importer())?;
        // Checked at the end, so that the device's early drop below runs anyway.
        let attached = dev_refs(dev);
        {
            let mut resv = buf.lock();
            att.map(dev, resv.locked(), DataDirection::ToDevice)?;
        }
        // The device goes away before the attachment: only the attachment keeps it.
        drop(reg);
        drop(att);
        assert_eq!(attached, before + 1);
        assert_eq!(ctx.counters.last_dev.load(Relaxed), raw as usize);
        // Read in the detach callback, before the attachment let go of its reference.
        assert!(ctx.counters.detach_dev_refs.load(Relaxed) >= 1);
        assert_eq!(ctx.finish(buf), NOTHING);
        Ok(())
    }

    /// An exporter that invalidates from inside its map, as exporters that move the buffer to
    /// map it do: the importer being mapped hears of it without a mapping, others with theirs.
    #[test]
    fn rust_dma_buf_invalidate_in_map() -> Result {
        let ctx = Ctx::new()?;
        let mut data = ctx.data_raw(false, false)?;
        data.invalidate_in_map = true;
        let buf =
            ctx.export_with::<SGT>(Arc::new(data, GFP_KERNEL)?, SIZE, ExportOptions::new())?;
        let first = ctx.attach_sgt(&buf)?;
        let second = ctx.attach_sgt(&buf)?;
        let (after_first, after_second, first_mapped, second_mapped) = {
            let mut resv = buf.lock();
            first.map(ctx.dev(), resv.locked(), DataDirection::ToDevice)?;
            let after_first = (
                ctx.invalidated.load(Relaxed),
                ctx.with_mapping.load(Relaxed),
            );
            second.map(ctx.dev(), resv.locked(), DataDirection::ToDevice)?;
            let after_second = (
                ctx.invalidated.load(Relaxed),
                ctx.with_mapping.load(Relaxed),
            );
            (
                after_first,
                after_second,
                first.is_mapped(resv.locked()),
                second.is_mapped(resv.locked()),
            )
        };
        // Both heard of the invalidation in the first map; neither had a mapping.
        assert_eq!(after_first, (2, 0));
        // The first one gave its mapping back in the second map.
        assert_eq!(after_second, (4, 1));
        assert_eq!(first_mapped, Ok(false));
        assert_eq!(second_mapped, Ok(true));
        assert_eq!(ctx.counters.live_maps.load(Relaxed), 1);
        drop(first);
        drop(second);
        assert_eq!(ctx.finish(buf), NOTHING);
        Ok(())
    }

    /// Exporters see the limits of the importer's DMA device.
    #[test]
    fn rust_dma_buf_segment_limit() -> Result {
        let ctx = Ctx::new()?;
        let dev = ctx.dev().as_raw();
        // A device without DMA parameters has the default limit of 64 KiB, or a page.
        assert_eq!(
            SgtExport::max_segment(ctx.dev()),
            (PAGE_SIZE as u32).max(65536)
        );
        let mut parms = KBox::new(
            pin_init::zeroed::<bindings::device_dma_parameters>(),
            GFP_KERNEL,
        )?;
        parms.max_segment_size = PAGE_SIZE as u32 + 1;
        // Leaked if an assertion fails: the device is then leaked too, still pointing to it.
        let parms = KBox::into_raw(parms);
        // SAFETY: The test owns the device and nothing else uses it.
        unsafe { (*dev).dma_parms = parms };
        assert_eq!(SgtExport::max_segment(ctx.dev()), PAGE_SIZE as u32);

        // Contiguous pages make one entry, unless the device's limit splits them.
        let entries = |ctx: &Ctx| -> Result<usize> {
            let data = ctx.data_of(contiguous_pages()?, false, false)?;
            let buf =
                ctx.export_with::<SGT>(Arc::new(data, GFP_KERNEL)?, SIZE, ExportOptions::new())?;
            let att = ctx.attach_sgt(&buf)?;
            let mut resv = buf.lock();
            Ok(att
                .map(ctx.dev(), resv.locked(), DataDirection::ToDevice)?
                .iter()
                .count())
        };
        assert_eq!(entries(&ctx), Ok(NR_PAGES));
        let ctx2 = Ctx::new()?;
        let mut parms2 = pin_init::zeroed::<bindings::device_dma_parameters>();
        parms2.max_segment_size = u32::MAX;
        // SAFETY: The test owns the device; `parms2` outlives its use in `entries()`.
        unsafe { (*ctx2.dev().as_raw()).dma_parms = &mut parms2 };
        let merged = entries(&ctx2);
        // SAFETY: As above.
        unsafe { (*ctx2.dev().as_raw()).dma_parms = core::ptr::null_mut() };
        assert_eq!(merged, Ok(1));
        flush_fput();
        assert_eq!(ctx.counters.released.load(Relaxed), 1);
        assert_eq!(ctx.counters.live_maps.load(Relaxed), 0);
        // SAFETY: As above; `parms` came from `KBox::into_raw` and is not used any more.
        unsafe {
            (*dev).dma_parms = core::ptr::null_mut();
            drop(KBox::from_raw(parms));
        }
        Ok(())
    }

    #[test]
    fn rust_dma_buf_pal_map() -> Result {
        let ctx = Ctx::new()?;
        let buf = ctx.export::<PAL_SGT>(false)?;
        let pal = PalImport::new(&buf, ctx.dev(), ctx.invalidated.clone())?;
        let (ranges, owner, live) = pal.map(&buf.lock(), |ranges, owner| {
            // Copied out, to be checked after the list is given back and the lock released.
            let mut copy = [PhysRange::new(0, 0); 2];
            for (dst, src) in copy.iter_mut().zip(ranges) {
                *dst = *src;
            }
            // The exporter counts the list as mapped until it is given back.
            (
                (ranges.len(), copy),
                owner,
                ctx.counters.live_maps.load(Relaxed),
            )
        })?;
        assert_eq!(ranges.0, 2);
        assert_eq!(ranges.1[0], PhysRange::new(FAKE_PHYS, PAGE_SIZE));
        assert_eq!(
            ranges.1[1],
            PhysRange::new(FAKE_PHYS + 4 * PAGE_SIZE as u64, 2 * PAGE_SIZE)
        );
        assert_eq!(owner, ctx.dev().as_raw());
        assert_eq!(live, 1);
        assert_eq!(ctx.counters.maps.load(Relaxed), 1);
        assert_eq!(ctx.counters.live_maps.load(Relaxed), 0);
        drop(pal);
        assert_eq!(ctx.finish(buf), NOTHING);
        Ok(())
    }

    /// A revoke: the exporter invalidates, importers hear of it with the lock held, and the
    /// mappings they kept after releasing the lock are unmapped.
    #[test]
    fn rust_dma_buf_revoke() -> Result {
        let ctx = Ctx::new()?;
        let buf = ctx.export::<SGT_PAL>(false)?;
        let pal = PalImport::new(&buf, ctx.dev(), ctx.invalidated.clone())?;
        let sgt = ctx.attach_sgt(&buf)?;
        let idle = ctx.attach_sgt(&buf)?;
        {
            let mut resv = buf.lock();
            pal.map(&resv, |_, _| ())?;
            sgt.map(ctx.dev(), resv.locked(), DataDirection::Bidirectional)?;
        }
        assert_eq!(ctx.counters.live_maps.load(Relaxed), 1);
        assert_eq!(ctx.invalidated.load(Relaxed), 0);

        // Only with the lock of the buffer.
        let ctx2 = Ctx::new()?;
        let other = ctx2.export::<SGT>(false)?;
        assert_eq!(buf.invalidate_mappings(other.lock().locked()), Err(EINVAL));
        assert_eq!(ctx2.finish(other), NOTHING);
        assert_eq!(ctx.invalidated.load(Relaxed), 0);

        let (heard, with_mapping, live, mapped, pal_map, sgt_map) = {
            // What an exporter does to revoke: mark the buffer, then invalidate, under the lock.
            let mut resv = buf.lock();
            buf.data().revoked.store(1, Relaxed);
            buf.invalidate_mappings(resv.locked())?;
            (
                ctx.invalidated.load(Relaxed),
                ctx.with_mapping.load(Relaxed),
                ctx.counters.live_maps.load(Relaxed),
                sgt.is_mapped(resv.locked()),
                pal.map(&resv, |_, _| ()).err(),
                sgt.map(ctx.dev(), resv.locked(), DataDirection::ToDevice)
                    .err(),
            )
        };
        // All three importers heard of it; the mapped one saw its mapping, under the lock.
        assert_eq!(heard, 3);
        assert_eq!(with_mapping, 1);
        // The mapping kept after the lock was released is gone.
        assert_eq!(live, 0);
        assert_eq!(mapped, Ok(false));
        assert_eq!(pal_map, Some(ENODEV));
        assert_eq!(sgt_map, Some(ENODEV));
        assert_eq!(ctx.counters.maps.load(Relaxed), 2);
        drop(pal);
        drop(sgt);
        drop(idle);
        assert_eq!(ctx.finish(buf), NOTHING);
        assert_eq!(ctx.counters.detach.load(Relaxed), 3);
        Ok(())
    }

    /// Pinned attachments are not invalidated; exporters that revoke refuse them.
    #[test]
    fn rust_dma_buf_pinned() -> Result {
        let ctx = Ctx::new()?;
        let buf = ctx.export::<SGT>(false)?;
        let Negotiated::Sgt(pinned) = buf.attach_pinned(ctx.dev(), &[ctx.sgt()])?;
        let dynamic = ctx.attach_sgt(&buf)?;
        let (heard, pinned_mapped, dynamic_mapped) = {
            let mut resv = buf.lock();
            pinned.map(ctx.dev(), resv.locked(), DataDirection::ToDevice)?;
            dynamic.map(ctx.dev(), resv.locked(), DataDirection::ToDevice)?;
            buf.invalidate_mappings(resv.locked())?;
            (
                ctx.invalidated.load(Relaxed),
                pinned.is_mapped(resv.locked()),
                dynamic.is_mapped(resv.locked()),
            )
        };
        assert_eq!(heard, 1);
        assert_eq!(pinned_mapped, Ok(true));
        assert_eq!(dynamic_mapped, Ok(false));
        assert_eq!(ctx.counters.live_maps.load(Relaxed), 1);
        drop(pinned);
        drop(dynamic);
        assert_eq!(ctx.finish(buf), NOTHING);

        let ctx = Ctx::new()?;
        let mut data = ctx.data_raw(false, false)?;
        data.refuse_pinned = true;
        let data = Arc::new(data, GFP_KERNEL)?;
        let buf = ctx.export_with::<SGT>(data, SIZE, ExportOptions::new())?;
        assert_eq!(
            buf.attach_pinned(ctx.dev(), &[ctx.sgt()]).err(),
            Some(EOPNOTSUPP)
        );
        assert!(ctx.attach_sgt(&buf).is_ok());
        assert_eq!(ctx.finish(buf), NOTHING);
        Ok(())
    }

    /// A new mapping of a dynamic attachment waits for the kernel's fences, and only for those.
    #[test]
    fn rust_dma_buf_map_waits() -> Result {
        let ctx = Ctx::new()?;
        let buf = ctx.export::<SGT>(false)?;
        let att = ctx.attach_sgt(&buf)?;
        let kernel = FenceRef::new(true)?;
        let bookkeep = FenceRef::new(true)?;
        let pending = {
            let mut resv = buf.lock();
            kernel.add_to(&resv, bindings::dma_resv_usage_DMA_RESV_USAGE_KERNEL)?;
            bookkeep.add_to(&resv, bindings::dma_resv_usage_DMA_RESV_USAGE_BOOKKEEP)?;
            let pending = !buf.resv().is_signaled(DmaResvUsage::Kernel);
            att.map(ctx.dev(), resv.locked(), DataDirection::ToDevice)?;
            pending
        };
        assert!(pending);
        assert_eq!(kernel.waits(), 1);
        assert!(kernel.is_signaled());
        assert_eq!(bookkeep.waits(), 0);
        assert!(!bookkeep.is_signaled());
        assert!(buf.resv().is_signaled(DmaResvUsage::Kernel));
        assert!(!buf.resv().is_signaled(DmaResvUsage::Bookkeep));
        // What an exporter waits for before the memory goes away.
        assert!(buf.resv().wait(DmaResvUsage::Bookkeep, false, None)? > 0);
        assert!(bookkeep.is_signaled());
        drop(att);
        assert_eq!(ctx.finish(buf), NOTHING);
        Ok(())
    }

    #[test]
    fn rust_dma_buf_resv_wait_timeout() -> Result {
        let ctx = Ctx::new()?;
        let buf = ctx.export::<SGT>(false)?;
        let fence = FenceRef::new(false)?;
        fence.add_to(&buf.lock(), bindings::dma_resv_usage_DMA_RESV_USAGE_WRITE)?;
        assert_eq!(
            buf.resv().wait(DmaResvUsage::Write, true, Some(1)).err(),
            Some(ETIMEDOUT)
        );
        // Kernel fences come before write fences: none to wait for.
        assert!(buf.resv().wait(DmaResvUsage::Kernel, true, Some(1))? > 0);
        fence.signal();
        assert!(buf.resv().wait(DmaResvUsage::Read, true, Some(1))? > 0);
        assert_eq!(ctx.finish(buf), NOTHING);
        Ok(())
    }

    #[test]
    fn rust_dma_buf_resv_lock_all() -> Result {
        let ctx = Ctx::new()?;
        let a = ctx.export::<SGT>(false)?;
        let b = ctx.export::<SGT>(false)?;
        let c = ctx.export::<SGT>(false)?;
        let att = ctx.attach_sgt(&b)?;
        let (both, a_held, b_held, not_c, other) = {
            // Listed twice, locked once.
            let mut set = DmaResvSet::lock_all(&[b.resv(), a.resv(), b.resv()], true)?;
            let both = set.contains(a.resv()) && set.contains(b.resv());
            let a_held = a.resv().try_lock().is_none();
            let b_held = b.resv().try_lock().is_none();
            let not_c = !set.contains(c.resv()) && set.locked(c.resv()).is_none();
            let locked = set.locked(b.resv()).ok_or(EINVAL)?;
            att.map(ctx.dev(), locked, DataDirection::ToDevice)?;
            // The proof of one lock is not the proof of another.
            let locked = set.locked(a.resv()).ok_or(EINVAL)?;
            (both, a_held, b_held, not_c, att.unmap(locked))
        };
        assert!(both && a_held && b_held && not_c);
        assert_eq!(other, Err(EINVAL));
        // Unlocked again.
        drop(a.resv().try_lock().ok_or(EBUSY)?);
        drop(b.resv().lock_interruptible()?);
        drop(att);
        drop(a);
        drop(c);
        assert_eq!(
            ctx.finish(b),
            Leftovers {
                unreleased: -2,
                ..NOTHING
            }
        );
        Ok(())
    }

    /// Maps the pages of the buffer for real, where there is DMA.
    #[cfg(CONFIG_HAS_DMA)]
    #[test]
    fn rust_dma_buf_sgt_dma() -> Result {
        let ctx = Ctx::new()?;
        let dev = ctx.dev().as_raw();
        // A faux device has no DMA mask; give it one, as `dma_coerce_mask_and_coherent()` does.
        // SAFETY: The test owns the device and nothing else uses it yet.
        unsafe { (*dev).dma_mask = &raw mut (*dev).coherent_dma_mask };
        // SAFETY: `dev` is a valid device with a DMA mask pointer.
        let ret = unsafe { bindings::dma_set_mask_and_coherent(dev, u64::MAX) };
        assert_eq!(ret, 0);

        let buf = ctx.export_with::<SGT>(ctx.data(false, true)?, SIZE, ExportOptions::new())?;
        let att = ctx.attach_sgt(&buf)?;
        let (addressed, len) = {
            let mut resv = buf.lock();
            let map = att.map(ctx.dev(), resv.locked(), DataDirection::Bidirectional)?;
            (
                map.iter().all(|entry| entry.dma_address() != 0),
                map.iter()
                    .map(|entry| entry.dma_len() as usize)
                    .sum::<usize>(),
            )
        };
        assert!(addressed);
        assert_eq!(len, SIZE);
        assert_eq!(ctx.counters.maps.load(Relaxed), 1);
        drop(att);
        assert_eq!(ctx.finish(buf), NOTHING);
        Ok(())
    }

    #[test]
    fn rust_dma_buf_cpu_access() -> Result {
        let ctx = Ctx::new()?;
        let buf = ctx.export::<SGT>(false)?;
        // SAFETY: `buf` is a valid buffer.
        let ret = unsafe {
            bindings::dma_buf_begin_cpu_access(
                buf.as_raw(),
                bindings::dma_data_direction::DMA_FROM_DEVICE,
            )
        };
        assert_eq!(ret, 0);
        assert_eq!(ctx.counters.cpu_access.load(Relaxed), 1);
        assert_eq!(ctx.finish(buf), NOTHING);
        Ok(())
    }
}
