// SPDX-License-Identifier: GPL-2.0

//! KUnit tests of the dma-buf abstractions.
//!
//! A Rust test exporter with a configurable offer of mapping types, and a Rust test importer, on a
//! faux device. The abstractions have no PAL importer (the C core gives physical addresses to
//! iommufd only), so PAL exports are imported here the way iommufd does it, through the C calls.
//! Every test checks at the end that the exporter saw as many detaches as attaches and unmaps as
//! maps, and that the buffer was released, i.e. nothing leaked.

#[macros::kunit_tests(rust_dma_buf)]
mod tests {
    use crate::{
        bindings,
        device::{Bound, Device},
        dma::DataDirection,
        dma_buf::*,
        faux,
        fs::file::{flags::O_CLOEXEC, FileDescriptorReservation},
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
    const FAKE_PHYS: bindings::phys_addr_t = 0x1_0000_0000;

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
        maps: Atomic<i32>,
        live_maps: Atomic<i32>,
        cpu_access: Atomic<i32>,
        released: Atomic<i32>,
    }

    /// The exporter data of a test buffer.
    struct TestBuf {
        pages: Arc<KVec<Page>>,
        provider: Opaque<bindings::p2pdma_provider>,
        counters: Arc<Counters>,
        revoked: Atomic<i32>,
        fail_attach: bool,
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

    impl Counters {
        fn map(&self) {
            self.maps.fetch_add(1, Relaxed);
            self.live_maps.fetch_add(1, Relaxed);
        }

        fn unmap(&self) {
            self.live_maps.fetch_sub(1, Relaxed);
        }
    }

    struct TestExporter<const OFFER: usize>;

    #[vtable]
    impl<const OFFER: usize> Exporter for TestExporter<OFFER> {
        type Data = Arc<TestBuf>;
        const MAPPING_TYPES: &'static [ExportType] = OFFERS[OFFER];

        fn attach(data: ArcBorrow<'_, TestBuf>, attach: &ExporterAttachment) -> Result {
            if data.fail_attach {
                return Err(EPERM);
            }
            // Rust importers are always revocable; the tests see this error otherwise.
            if !attach.is_revocable() || attach.buf().size() != SIZE {
                return Err(ENOTRECOVERABLE);
            }
            data.counters.attach.fetch_add(1, Relaxed);
            Ok(())
        }

        fn detach(data: ArcBorrow<'_, TestBuf>, _attach: &ExporterAttachment) {
            data.counters.detach.fetch_add(1, Relaxed);
        }

        fn map_sgt(
            data: ArcBorrow<'_, TestBuf>,
            attach: &ExporterAttachment,
            dir: DataDirection,
        ) -> Result<SgtExport> {
            if !attach.is_type::<Sgt>() {
                return Err(ENOTRECOVERABLE);
            }
            if data.revoked.load(Relaxed) != 0 {
                return Err(ENODEV);
            }
            let sgt = if data.dma_map {
                SgtExport::from_pages(attach, &data.pages, dir)?
            } else {
                // UML has no DMA: hand out the page table without mapping it.
                SgtExport::from_pages_unmapped(attach, &data.pages, dir)?
            };
            data.counters.map();
            Ok(sgt)
        }

        fn unmap_sgt(data: ArcBorrow<'_, TestBuf>, _attach: &ExporterAttachment, sgt: SgtExport) {
            drop(sgt);
            data.counters.unmap();
        }

        fn map_pal(data: ArcBorrow<'_, TestBuf>, attach: &ExporterAttachment) -> Result<PalExport> {
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

        fn unmap_pal(data: ArcBorrow<'_, TestBuf>, _attach: &ExporterAttachment, phys: PalExport) {
            drop(phys);
            data.counters.unmap();
        }

        fn begin_cpu_access(
            data: ArcBorrow<'_, TestBuf>,
            buf: &DmaBuf,
            _dir: DataDirection,
        ) -> Result {
            if buf.size() != SIZE {
                return Err(ENOTRECOVERABLE);
            }
            data.counters.cpu_access.fetch_add(1, Relaxed);
            Ok(())
        }
    }

    /// The test importer: counts invalidations and its own drop.
    struct TestImporter {
        invalidated: Arc<Atomic<i32>>,
        dropped: Arc<Atomic<i32>>,
    }

    impl Drop for TestImporter {
        fn drop(&mut self) {
            self.dropped.fetch_add(1, Relaxed);
        }
    }

    impl Importer for TestImporter {
        fn invalidate(&self) {
            self.invalidated.fetch_add(1, Relaxed);
        }
    }

    /// One test: a faux device, an exporter buffer and its counters.
    struct Ctx {
        dev: faux::Registration,
        counters: Arc<Counters>,
        invalidated: Arc<Atomic<i32>>,
        importers_dropped: Arc<Atomic<i32>>,
    }

    impl Ctx {
        fn new() -> Result<Self> {
            // A test that fails an assertion leaks its device: give each its own name.
            static SERIAL: Atomic<i32> = Atomic::new(0);
            let name =
                CString::try_from_fmt(fmt!("rust-dma-buf-test-{}", SERIAL.fetch_add(1, Relaxed)))?;
            Ok(Self {
                dev: faux::Registration::new(&name, None)?,
                counters: Arc::new(
                    Counters {
                        attach: Atomic::new(0),
                        detach: Atomic::new(0),
                        maps: Atomic::new(0),
                        live_maps: Atomic::new(0),
                        cpu_access: Atomic::new(0),
                        released: Atomic::new(0),
                    },
                    GFP_KERNEL,
                )?,
                invalidated: Arc::new(Atomic::new(0), GFP_KERNEL)?,
                importers_dropped: Arc::new(Atomic::new(0), GFP_KERNEL)?,
            })
        }

        fn dev(&self) -> &Device<Bound> {
            self.dev.as_ref().as_ref()
        }

        /// Exports a buffer; also returns a reference to its exporter data.
        fn export_with<const OFFER: usize>(
            &self,
            fail_attach: bool,
            dma_map: bool,
            size: usize,
        ) -> Result<(ARef<DmaBuf>, Arc<TestBuf>)> {
            let mut pages = KVec::with_capacity(NR_PAGES, GFP_KERNEL)?;
            for _ in 0..NR_PAGES {
                pages.push(Page::alloc_page(GFP_KERNEL)?, GFP_KERNEL)?;
            }
            let data = TestBuf {
                pages: Arc::new(pages, GFP_KERNEL)?,
                // SAFETY: All-zeroes is a valid provider.
                provider: Opaque::new(unsafe { core::mem::zeroed() }),
                counters: self.counters.clone(),
                revoked: Atomic::new(0),
                fail_attach,
                dma_map,
            };
            let data = Arc::new(data, GFP_KERNEL)?;
            // SAFETY: The provider is ours and not shared yet.
            unsafe { (*data.provider.get()).owner = self.dev().as_raw() };
            Ok((
                DmaBuf::export::<TestExporter<OFFER>>(data.clone(), size)?,
                data,
            ))
        }

        fn export<const OFFER: usize>(&self, fail_attach: bool) -> Result<ARef<DmaBuf>> {
            Ok(self.export_with::<OFFER>(fail_attach, false, SIZE)?.0)
        }

        fn importer(&self) -> TestImporter {
            TestImporter {
                invalidated: self.invalidated.clone(),
                dropped: self.importers_dropped.clone(),
            }
        }

        fn attach(
            &self,
            buf: &DmaBuf,
            types: &[ImportType<'_>],
        ) -> Result<Negotiated<TestImporter>> {
            buf.attach(self.dev(), types, self.importer())
        }

        fn sgt(&self) -> ImportType<'_> {
            ImportType::Sgt {
                dma_dev: self.dev(),
                p2p: false,
            }
        }

        /// Drops `buf` and checks that nothing leaked.
        fn finish(&self, buf: ARef<DmaBuf>) {
            drop(buf);
            // The last reference of a buffer is a file, which kernel threads release from a
            // work item.
            // SAFETY: Flushing delayed file releases has no requirements.
            unsafe { bindings::flush_delayed_fput() };
            let c = &self.counters;
            assert_eq!(c.released.load(Relaxed), 1);
            assert_eq!(c.live_maps.load(Relaxed), 0);
            assert_eq!(c.attach.load(Relaxed), c.detach.load(Relaxed));
        }
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
        fn map<R>(
            &self,
            resv: &ResvGuard<'_>,
            f: impl FnOnce(&[PhysRange], *mut bindings::device) -> R,
        ) -> Result<R> {
            assert!(resv.is_locked(&self.buf));
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

    /// Negotiates a Rust SGT importer (`b's'`) or a PAL import (`b'p'`) against the offer
    /// `OFFER`; returns the type name or the error.
    fn negotiate<const OFFER: usize>(imp: u8) -> Result<&'static str> {
        let ctx = Ctx::new()?;
        let buf = ctx.export::<OFFER>(false)?;
        let res = if imp == b's' {
            ctx.attach(&buf, &[ctx.sgt()]).map(|n| n.type_name())
        } else {
            PalImport::new(&buf, ctx.dev(), ctx.invalidated.clone()).map(|_| Pal::NAME)
        };
        ctx.finish(buf);
        assert_eq!(ctx.counters.attach.load(Relaxed), i32::from(res.is_ok()));
        res
    }

    #[test]
    fn rust_dma_buf_export_fd_get() -> Result {
        let ctx = Ctx::new()?;
        let buf = ctx.export::<SGT>(false)?;
        assert_eq!(buf.size(), SIZE);

        let fd = buf.new_fd()?;
        let fd = i32::try_from(fd)?;
        let got = DmaBuf::get(fd)?;
        assert!(*got == *buf);
        assert_eq!(got.size(), SIZE);
        drop(got);

        // A reserved but empty slot is not an open file.
        let reserved = FileDescriptorReservation::get_unused_fd_flags(O_CLOEXEC)?;
        assert_eq!(
            DmaBuf::get(i32::try_from(reserved.reserved_fd())?).err(),
            Some(EBADF)
        );
        drop(reserved);
        assert_eq!(DmaBuf::get(-1).err(), Some(EBADF));

        // SAFETY: `fd` is the descriptor installed above, not used afterwards.
        assert_eq!(unsafe { bindings::close_fd(fd as u32) }, 0);
        ctx.finish(buf);
        Ok(())
    }

    #[test]
    fn rust_dma_buf_export_size_zero() -> Result {
        let ctx = Ctx::new()?;
        assert_eq!(
            ctx.export_with::<SGT>(false, false, 0).err().map(|_| ()),
            Some(())
        );
        assert_eq!(ctx.export::<SGT>(false).map(|_| ()), Ok(()));
        // SAFETY: Flushing delayed file releases has no requirements.
        unsafe { bindings::flush_delayed_fput() };
        assert_eq!(ctx.counters.released.load(Relaxed), 2);
        assert_eq!(ctx.export_with::<SGT>(false, false, 0).err(), Some(EINVAL));
        // The exporter data of the failed export was dropped right away.
        assert_eq!(ctx.counters.released.load(Relaxed), 3);
        Ok(())
    }

    #[test]
    fn rust_dma_buf_negotiate() -> Result {
        // Each importer gets the one type it takes, wherever the exporter lists it.
        assert_eq!(negotiate::<SGT>(b's'), Ok("sgt"));
        assert_eq!(negotiate::<SGT>(b'p'), Err(EOPNOTSUPP));
        assert_eq!(negotiate::<PAL>(b'p'), Ok("pal"));
        assert_eq!(negotiate::<PAL>(b's'), Err(EOPNOTSUPP));
        assert_eq!(negotiate::<PAL_SGT>(b's'), Ok("sgt"));
        assert_eq!(negotiate::<PAL_SGT>(b'p'), Ok("pal"));
        assert_eq!(negotiate::<SGT_PAL>(b's'), Ok("sgt"));
        assert_eq!(negotiate::<SGT_PAL>(b'p'), Ok("pal"));
        // Peer-to-peer only buffers need peer-to-peer importers.
        assert_eq!(negotiate::<SGT_P2P>(b's'), Err(EOPNOTSUPP));
        Ok(())
    }

    #[test]
    fn rust_dma_buf_negotiate_p2p() -> Result {
        let ctx = Ctx::new()?;
        let buf = ctx.export::<SGT_P2P>(false)?;
        let p2p = ImportType::Sgt {
            dma_dev: ctx.dev(),
            p2p: true,
        };
        let Negotiated::Sgt(att) = ctx.attach(&buf, &[p2p])?;
        assert!(att.peer2peer());
        drop(att);
        assert_eq!(ctx.attach(&buf, &[]).err(), Some(EINVAL));
        ctx.finish(buf);
        Ok(())
    }

    #[test]
    fn rust_dma_buf_attach_error() -> Result {
        let ctx = Ctx::new()?;
        let buf = ctx.export::<SGT>(true)?;
        assert_eq!(ctx.attach(&buf, &[ctx.sgt()]).err(), Some(EPERM));
        // The importer data went away with the failed attach.
        assert_eq!(ctx.importers_dropped.load(Relaxed), 1);
        ctx.finish(buf);
        assert_eq!(ctx.counters.attach.load(Relaxed), 0);
        Ok(())
    }

    #[test]
    fn rust_dma_buf_sgt_map() -> Result {
        let ctx = Ctx::new()?;
        let buf = ctx.export::<PAL_SGT>(false)?;
        let Negotiated::Sgt(att) = ctx.attach(&buf, &[ctx.sgt()])?;
        {
            let resv = buf.lock();
            let map = att.map(&resv, DataDirection::ToDevice)?;
            assert_eq!(map.dir(), DataDirection::ToDevice);
            // Physically contiguous pages may share an entry.
            let entries = map.iter().count();
            assert!((1..=NR_PAGES).contains(&entries));
            let second = att.map(&resv, DataDirection::FromDevice)?;
            assert_eq!(ctx.counters.live_maps.load(Relaxed), 2);
            drop(second);
            assert_eq!(ctx.counters.live_maps.load(Relaxed), 1);
        }
        assert_eq!(ctx.counters.maps.load(Relaxed), 2);
        assert_eq!(ctx.counters.live_maps.load(Relaxed), 0);

        // The lock of another buffer is not the lock of this one.
        let ctx2 = Ctx::new()?;
        let other = ctx2.export::<SGT>(false)?;
        {
            let resv = other.lock();
            assert_eq!(att.map(&resv, DataDirection::ToDevice).err(), Some(EINVAL));
        }
        ctx2.finish(other);
        assert_eq!(ctx.counters.maps.load(Relaxed), 2);
        drop(att);
        ctx.finish(buf);
        assert_eq!(ctx.counters.attach.load(Relaxed), 1);
        Ok(())
    }

    #[test]
    fn rust_dma_buf_pal_map() -> Result {
        let ctx = Ctx::new()?;
        let buf = ctx.export::<PAL_SGT>(false)?;
        let pal = PalImport::new(&buf, ctx.dev(), ctx.invalidated.clone())?;
        {
            let resv = buf.lock();
            pal.map(&resv, |ranges, owner| {
                assert_eq!(ranges.len(), 2);
                assert_eq!(ranges[0], PhysRange::new(FAKE_PHYS, PAGE_SIZE));
                assert_eq!(ranges[1].addr(), FAKE_PHYS + 4 * PAGE_SIZE as u64);
                assert_eq!(ranges[1].len(), 2 * PAGE_SIZE);
                assert_eq!(owner, ctx.dev().as_raw());
                // The exporter counts the list as mapped until it is given back.
                assert_eq!(ctx.counters.live_maps.load(Relaxed), 1);
            })?;
        }
        assert_eq!(ctx.counters.maps.load(Relaxed), 1);
        assert_eq!(ctx.counters.live_maps.load(Relaxed), 0);
        drop(pal);
        ctx.finish(buf);
        Ok(())
    }

    #[test]
    fn rust_dma_buf_revoke() -> Result {
        let ctx = Ctx::new()?;
        let (buf, data) = ctx.export_with::<SGT_PAL>(false, false, SIZE)?;
        let pal = PalImport::new(&buf, ctx.dev(), ctx.invalidated.clone())?;
        let Negotiated::Sgt(sgt) = ctx.attach(&buf, &[ctx.sgt()])?;
        {
            let resv = buf.lock();
            pal.map(&resv, |_, _| ())?;
            drop(sgt.map(&resv, DataDirection::Bidirectional)?);
            assert_eq!(ctx.invalidated.load(Relaxed), 0);

            // What an exporter does to revoke: mark the buffer, then invalidate, under the lock.
            data.revoked.store(1, Relaxed);
            resv.invalidate_mappings();
            // Both importers heard of it.
            assert_eq!(ctx.invalidated.load(Relaxed), 2);

            assert_eq!(pal.map(&resv, |_, _| ()).err(), Some(ENODEV));
            assert_eq!(sgt.map(&resv, DataDirection::ToDevice).err(), Some(ENODEV));
        }
        assert_eq!(ctx.counters.maps.load(Relaxed), 2);
        drop(pal);
        drop(sgt);
        drop(data);
        ctx.finish(buf);
        assert_eq!(ctx.counters.detach.load(Relaxed), 2);
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

        let buf = ctx.export_with::<SGT>(false, true, SIZE)?.0;
        let Negotiated::Sgt(att) = ctx.attach(&buf, &[ctx.sgt()])?;
        {
            let resv = buf.lock();
            let map = att.map(&resv, DataDirection::Bidirectional)?;
            let mut len = 0;
            for entry in map.iter() {
                assert!(entry.dma_address() != 0);
                len += entry.dma_len() as usize;
            }
            assert_eq!(len, SIZE);
        }
        assert_eq!(ctx.counters.maps.load(Relaxed), 1);
        drop(att);
        ctx.finish(buf);
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
        // `end_cpu_access` is not implemented: the core skips it.
        // SAFETY: `buf` is a valid buffer.
        let ret = unsafe {
            bindings::dma_buf_end_cpu_access(
                buf.as_raw(),
                bindings::dma_data_direction::DMA_FROM_DEVICE,
            )
        };
        assert_eq!(ret, 0);
        assert_eq!(ctx.counters.cpu_access.load(Relaxed), 1);
        ctx.finish(buf);
        Ok(())
    }
}
